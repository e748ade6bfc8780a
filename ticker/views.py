"""Views of a symbol's stream (pure): a maximum rate, a selection of fields, changed-fields deltas.

A subscription with options is carried by the hub under a *view key*: the symbol's own hub key (``AAPL``, or
the delayed ``~AAPL``) with a suffix naming the options, ``AAPL@500000/p,b,a/d`` (at most one entry every
500,000 µs, fields ``p b a``, deltas). Subscribers asking the same symbol with the same options share the key,
so they share groups, payloads and frames exactly as plain subscribers do; a view's entry is worked out once
per flush from its base key's entry (:func:`render`), however many connections receive it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from math import ceil
from typing import Any

import orjson

from ticker.quote import compact_dumps

#: The fields a subscriber may select, in the Q entry's order; ``s`` and ``q`` always travel.
FIELDS = ("p", "b", "a", "v", "c", "cp", "o", "h", "l", "pc", "vw", "t")
_ORDER = {f: i for i, f in enumerate(FIELDS)}
#: The lowest rate a subscriber may ask (entries per second per symbol).
MIN_HZ = 0.1
_MARK = "@"  # never part of a valid symbol (ticker.symbols.SYMBOL_RE)
_ALWAYS = frozenset(("s", "t", "q"))
_dumps = compact_dumps  # a view keeps its entries
_loads = orjson.loads


@dataclass(frozen=True, slots=True)
class ViewSpec:
    """The options of one view: ``interval_us`` between entries (0: every flush), the ``fields`` selected
    (None: all), ``delta`` (changed fields only)."""

    interval_us: int = 0
    fields: tuple[str, ...] | None = None
    delta: bool = False

    @property
    def plain(self) -> bool:
        """Whether the view is the symbol's own stream (no options)."""
        return not self.interval_us and self.fields is None and not self.delta

    @property
    def rate(self) -> float | None:
        """The granted rate, entries per second (None: unthrottled)."""
        return granted(self.interval_us) if self.interval_us else None

    def key(self, base: str) -> str:
        """The hub key of this view of hub key ``base``."""
        if self.plain:
            return base
        fields = ",".join(self.fields) if self.fields is not None else ""
        return f"{base}{_MARK}{self.interval_us}/{fields}/{'d' if self.delta else ''}"


def interval_of(rate: float) -> int:
    """Microseconds between entries at ``rate`` per second, rounded up (so the spacing is never shorter)."""
    return ceil(1e6 / rate - 1e-6)


def granted(interval_us: int) -> float:
    """The rate an interval gives, as reported to clients (3 decimals)."""
    return round(1e6 / interval_us, 3)


def unknown_fields(names: Iterable[str]) -> list[str]:
    """The names in ``names`` that are not selectable fields, in order, without repeats."""
    return [n for n in dict.fromkeys(names) if n not in _ORDER]


def canonical_fields(names: Iterable[str]) -> tuple[str, ...]:
    """Known field names in the Q entry's order, without repeats (so equal selections share a view)."""
    return tuple(sorted(set(names), key=_ORDER.__getitem__))


def base_of(key: str) -> str:
    """The hub key a view key derives from (the key itself for a plain key)."""
    i = key.find(_MARK)
    return key if i < 0 else key[:i]


def spec_of(key: str) -> ViewSpec:
    """The options of hub key ``key`` (a plain spec for a plain key)."""
    i = key.find(_MARK)
    if i < 0:
        return ViewSpec()
    interval, fields, delta = key[i + 1 :].split("/")
    return ViewSpec(int(interval), tuple(fields.split(",")) if fields else None, delta == "d")


def is_view_key(key: str) -> bool:
    """Whether ``key`` is a view key (it has options)."""
    return _MARK in key


def is_delta_key(key: str) -> bool:
    """Whether ``key`` is a view whose entries are deltas (a client merges them)."""
    return _MARK in key and key.endswith("/d")


def select(entry: dict[str, Any], fields: tuple[str, ...] | None) -> dict[str, Any]:
    """``entry`` (a decoded Q entry) with only ``s``, ``t``, ``q`` and ``fields`` (all of it for None)."""
    if fields is None:
        return entry
    return {k: v for k, v in entry.items() if k in _ALWAYS or k in fields}


def delta(prev: dict[str, Any], cur: dict[str, Any]) -> dict[str, Any]:
    """The entry that turns ``prev`` into ``cur`` by merging: ``s``, the fields whose value changed, ``null``
    for the fields gone, ``q``."""
    out: dict[str, Any] = {"s": cur["s"]}
    get = prev.get
    for k, v in cur.items():
        if k != "q" and k != "s" and (k not in prev or get(k) != v):
            out[k] = v
    for k in prev:
        if k not in cur:
            out[k] = None
    out["q"] = cur["q"]
    return out


def merge(state: dict[str, Any], entry: dict[str, Any]) -> None:
    """Apply a delta ``entry`` to ``state`` in place: set what it carries, delete what it sends as null."""
    for k, v in entry.items():
        if v is None:
            state.pop(k, None)
        else:
            state[k] = v


def decode(encoded: bytes) -> dict[str, Any]:
    """A hub entry's JSON as a dict (a view's input)."""
    d: dict[str, Any] = _loads(encoded)
    return d


def render(
    spec: ViewSpec, entry: dict[str, Any], sent: dict[str, Any] | None
) -> tuple[bytes, bytes, dict[str, Any]]:
    """A view's entry for base ``entry`` given the state it last ``sent`` (None: nothing yet).

    Returns (the bytes to send, the full entry as a snapshot would carry it, the new sent state).
    """
    cur = select(entry, spec.fields)
    full = _dumps(cur)
    if spec.delta and sent is not None:
        return _dumps(delta(sent, cur)), full, cur
    return full, full, cur
