"""Who may see what (pure): the entitlements of a token's ``ticker`` claim and the identity behind a connection.

A symbol matching a ``realtime`` pattern is real-time; else one matching a ``delayed`` pattern is
delayed; else it is forbidden. A pattern is a symbol or a glob whose only wildcard is ``*``. A token
without the claim is real-time for everything (:data:`EVERYTHING`). The contract is docs/security.md.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_PATTERNS = 1000  # per list: a claim is client-controlled input too
MAX_PATTERN_LEN = 64
MAX_STARS = 3  # per pattern: more would let a regex backtrack for seconds on one symbol


class Tier(enum.Enum):
    """How one symbol reaches one user."""

    REALTIME = "realtime"
    DELAYED = "delayed"
    FORBIDDEN = "forbidden"


def _matcher(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    alts = "|".join(".*".join(re.escape(part) for part in p.split("*")) for p in patterns)
    return re.compile(f"(?:{alts})\\Z")


def _patterns(claim: Mapping[str, Any], key: str) -> tuple[str, ...]:
    raw = claim.get(key, [])
    if not isinstance(raw, list) or len(raw) > MAX_PATTERNS:
        raise ValueError(f'"ticker.{key}" must be a list of at most {MAX_PATTERNS} patterns')
    out: dict[str, None] = {}
    for p in raw:
        if not isinstance(p, str) or not 0 < len(p) <= MAX_PATTERN_LEN or p.count("*") > MAX_STARS:
            raise ValueError(
                f'"ticker.{key}" holds {str(p)[:40]!r}: expected a symbol or a glob with at most {MAX_STARS} *'
            )
        out[p.strip().upper()] = None
    return tuple(out)


def _limit(claim: Mapping[str, Any], key: str, kind: type = int, least: float = 0) -> Any:
    raw = claim.get(key)
    if raw is None:
        return None
    if (
        isinstance(raw, bool)
        or not isinstance(raw, int | float)
        or not least <= raw < 1e9
        or (kind is int and raw != int(raw))
    ):
        raise ValueError(
            f'"ticker.{key}" must be a {"whole " if kind is int else ""}number of at least {least:g}'
        )
    return kind(raw)


@dataclass(frozen=True, slots=True)
class Entitlements:
    """The ``ticker`` claim: patterns per tier and per-user limits (None: the server's default applies)."""

    realtime: tuple[str, ...] = ("*",)
    delayed: tuple[str, ...] = ()
    max_symbols: int | None = None
    max_connections: int | None = None
    max_hz: float | None = None
    _rt: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _dl: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rt", _matcher(self.realtime))
        object.__setattr__(self, "_dl", _matcher(self.delayed))

    @classmethod
    def from_claim(cls, claim: object) -> Entitlements:
        """Parse a token's ``ticker`` claim (None: everything real-time); ``ValueError`` says what is wrong."""
        if claim is None:
            return EVERYTHING
        if not isinstance(claim, dict):
            raise ValueError('the "ticker" claim must be an object')
        return cls(
            realtime=_patterns(claim, "realtime"),
            delayed=_patterns(claim, "delayed"),
            max_symbols=_limit(claim, "max_symbols", least=1),
            max_connections=_limit(claim, "max_connections"),  # 0: no cap, as --max-connections-per-user 0
            max_hz=_limit(claim, "max_hz", float, least=0.1),
        )

    def tier(self, symbol: str) -> Tier:
        """The tier of ``symbol`` (already normalized) for this user."""
        if self._rt is not None and self._rt.match(symbol):
            return Tier.REALTIME
        if self._dl is not None and self._dl.match(symbol):
            return Tier.DELAYED
        return Tier.FORBIDDEN

    def split(self, symbols: Iterable[str]) -> tuple[list[str], list[str], list[str]]:
        """(real-time, delayed, forbidden) symbols of ``symbols``, each in the given order."""
        rt: list[str] = []
        dl: list[str] = []
        no: list[str] = []
        for s in symbols:
            t = self.tier(s)
            (rt if t is Tier.REALTIME else dl if t is Tier.DELAYED else no).append(s)
        return rt, dl, no


#: No ``ticker`` claim, or ``--auth none``: every symbol real-time, the server's limits.
EVERYTHING = Entitlements()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is behind a connection: the token's ``sub``, its ``exp`` (epoch seconds) and entitlements."""

    sub: str
    exp: float
    entitlements: Entitlements = EVERYTHING


class UserSlots:
    """Concurrent connections per user on this node, against each user's cap.

    A user's cap is their token's ``max_connections``, else ``default_cap`` (``--max-connections-per-user``);
    0 means no cap. Only users holding a connection are kept.
    """

    __slots__ = ("_held", "default_cap")

    def __init__(self, default_cap: int = 0) -> None:
        self.default_cap = default_cap
        self._held: dict[str, int] = {}

    def cap_of(self, identity: Identity) -> int:
        """The connection cap of ``identity`` (0: none)."""
        cap = identity.entitlements.max_connections
        return self.default_cap if cap is None else cap

    def full(self, identity: Identity) -> bool:
        """Whether ``identity`` holds as many connections as its cap allows."""
        cap = self.cap_of(identity)
        return cap > 0 and self._held.get(identity.sub, 0) >= cap

    def take(self, identity: Identity) -> bool:
        """Count one more connection of ``identity``; False (nothing counted) when it is at its cap."""
        if self.full(identity):
            return False
        self._held[identity.sub] = self._held.get(identity.sub, 0) + 1
        return True

    def give_back(self, sub: str) -> None:
        """One connection of ``sub`` ended."""
        n = self._held.get(sub, 0) - 1
        if n > 0:
            self._held[sub] = n
        else:
            self._held.pop(sub, None)

    def held(self, sub: str) -> int:
        """Connections ``sub`` holds now."""
        return self._held.get(sub, 0)
