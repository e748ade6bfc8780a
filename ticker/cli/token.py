"""``ticker token --sub NAME``: print an HS256 token signed with ``TICKER_JWT_SECRET``, for development and tests.

Without ``--realtime``, ``--delayed`` or a limit the token has no ``ticker`` claim: everything
real-time. With ``--realtime`` or ``--delayed`` the claim holds both lists (a missing one empty);
with only a limit, ``realtime`` is ``["*"]``. PyJWT loads when the command runs.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

from ticker.auth.options import SECRET_ENV, SECRET_FILE_ENV, KeyLoadError, count
from ticker.entitlements import Entitlements
from ticker.errors import OptionError
from ticker.options import option, positive

PATTERN_RE = re.compile(r"[A-Z0-9.\-:/_*]{1,64}")


def patterns(text: str) -> list[str]:
    """Comma-separated symbols or globs with ``*``, upper-cased (empty text: none)."""
    out = [p.strip().upper() for p in text.split(",") if p.strip()]
    bad = [p for p in out if not PATTERN_RE.fullmatch(p)]
    if bad:
        raise OptionError(f"invalid pattern {bad[0][:40]!r}: expected a symbol or a glob with *")
    return out


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """Everything ``ticker token`` can be told, typed."""

    sub: str = option(help="the token's subject: the user it names", metavar="NAME")
    realtime: list[str] | None = option(
        None, "comma-separated symbols or globs (*) streamed real-time", parse=patterns, metavar="PATTERNS"
    )
    delayed: list[str] | None = option(
        None, "comma-separated symbols or globs (*) streamed delayed", parse=patterns, metavar="PATTERNS"
    )
    ttl: int = option(3600, "seconds until the token expires (3600)", parse=positive(int), metavar="SECONDS")
    max_connections: int | None = option(
        None, "the user's concurrent connections per node", parse=count, metavar="N"
    )
    max_symbols: int | None = option(None, "the user's symbols per connection", parse=count, metavar="N")
    audience: str | None = option(None, "the aud claim (as --jwt-audience of serve)", env="JWT_AUDIENCE")
    issuer: str | None = option(None, "the iss claim (as --jwt-issuer of serve)", env="JWT_ISSUER")

    def __post_init__(self) -> None:
        if not self.sub.strip():
            raise OptionError("--sub must not be empty")
        claim = self.claim()
        if claim is not None:
            Entitlements.from_claim(claim)  # a ValueError says what is wrong

    def claim(self) -> dict[str, Any] | None:
        """The ``ticker`` claim these flags make; None: none (everything real-time)."""
        limits = {
            k: v
            for k, v in (("max_symbols", self.max_symbols), ("max_connections", self.max_connections))
            if v is not None
        }
        if self.realtime is None and self.delayed is None:
            return {"realtime": ["*"], "delayed": [], **limits} if limits else None
        return {"realtime": self.realtime or [], "delayed": self.delayed or [], **limits}

    def claims(self, now: float) -> dict[str, Any]:
        """Every claim of the token issued at ``now`` (epoch seconds)."""
        out: dict[str, Any] = {"sub": self.sub, "iat": int(now), "exp": int(now) + self.ttl}
        if self.audience:
            out["aud"] = self.audience
        if self.issuer:
            out["iss"] = self.issuer
        claim = self.claim()
        if claim is not None:
            out["ticker"] = claim
        return out


def run_token(config: TokenConfig) -> int:
    """Print the token on stdout; without a usable secret, one line on stderr and status 2."""
    import jwt

    from ticker.auth.keys import load_secret

    try:
        secret = load_secret(os.environ)
    except KeyLoadError as exc:
        secret, problem = None, str(exc)
    else:
        problem = f"ticker token needs {SECRET_ENV} (or {SECRET_FILE_ENV}) set"
    if secret is None:
        sys.stderr.write(f"ticker: error: {problem}\n")
        return 2
    print(jwt.encode(config.claims(time.time()), secret, algorithm="HS256"))
    return 0
