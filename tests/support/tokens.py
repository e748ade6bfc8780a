"""Tokens for tests of ``--auth jwt``: one HS256 secret, and tokens minted with PyJWT."""

from __future__ import annotations

import time
from typing import Any

import jwt

#: The HS256 secret the test servers get in ``TICKER_JWT_SECRET`` (32 bytes or more, as RFC 7518 asks).
SECRET = "test-secret-of-the-ticker-suite-0123456789"


def mint(
    sub: str = "alice",
    ttl: float = 300.0,
    realtime: list[str] | None = None,
    delayed: list[str] | None = None,
    key: Any = SECRET,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A signed token for ``sub`` expiring ``ttl`` seconds from now; entitlements only if a tier is given."""
    body: dict[str, Any] = {"sub": sub, "exp": int(time.time() + ttl)}
    if realtime is not None or delayed is not None or "ticker" in claims:
        ent = dict(claims.pop("ticker", {}))
        ent.setdefault("realtime", realtime or [])
        ent.setdefault("delayed", delayed or [])
        body["ticker"] = ent
    body.update(claims)
    return jwt.encode(body, key, algorithm=algorithm, headers=headers)


def bearer(token: str) -> dict[str, str]:
    """The ``Authorization`` header carrying ``token``."""
    return {"Authorization": f"Bearer {token}"}
