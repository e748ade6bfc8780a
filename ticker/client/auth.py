"""The client's bearer token: a fixed one or one from an async provider, renewed before its ``exp``.

The client holds no key, so it never verifies a token: it only reads the ``exp`` claim (base64 of the
payload segment, standard library only) to know when to renew. The server does the verifying.
Nothing here logs or formats a token.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable

from ticker.client.models import TokenProviderError

log = logging.getLogger("ticker.client")

TokenProvider = Callable[[], Awaitable[str]]

#: Renew once this fraction of the remaining lifetime has passed ...
REFRESH_FRACTION = 0.8
#: ... and at least this many seconds before ``exp`` (a token nearer its end is renewed before connecting).
REFRESH_MARGIN = 5.0
#: Never ask the provider more often than this (a provider that keeps answering a stale token).
MIN_REFRESH_INTERVAL = 0.5


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT in epoch seconds, read without verifying it; None when there is none."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (
        ValueError,
        RecursionError,
    ):  # binascii.Error, UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    try:
        value = float(exp)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def refresh_delay(exp: float, now: float) -> float:
    """Seconds from ``now`` until a token expiring at ``exp`` should be renewed (0: at once).

    At 80 % of the remaining lifetime, and at least :data:`REFRESH_MARGIN` seconds before ``exp``.
    """
    remaining = exp - now
    return max(0.0, min(REFRESH_FRACTION * remaining, remaining - REFRESH_MARGIN))


class TokenSource:
    """The token the client presents: fixed (``token``) or fetched from ``provider`` and renewed.

    ``clock`` is the wall clock (``exp`` is epoch seconds); tests pass their own.
    """

    def __init__(
        self,
        token: str | None = None,
        provider: TokenProvider | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (token is None) == (provider is None):
            raise ValueError("pass either token= or token_provider=, not both")
        if token is not None and (not isinstance(token, str) or not token):
            raise ValueError("token must be a non-empty string")
        self.provider = provider
        self._clock = clock
        self._token = token
        self._exp = token_expiry(token) if token is not None else None
        self._rejected = False
        self._warned = False
        self.calls = 0  # successful provider calls

    @property
    def renewable(self) -> bool:
        """True when a provider can give a new token."""
        return self.provider is not None

    @property
    def exp(self) -> float | None:
        """The current token's ``exp`` (epoch seconds), if it has one."""
        return self._exp

    def stale(self) -> bool:
        """True when the provider should be asked before connecting: no token yet, refused, or near ``exp``."""
        if self.provider is None:
            return False
        if self._token is None or self._rejected:
            return True
        return self._exp is not None and self._exp - self._clock() <= REFRESH_MARGIN

    def reject(self) -> None:
        """The server refused the current token: the next :meth:`current` asks the provider for another."""
        self._rejected = True

    async def current(self) -> str:
        """The token to connect with, renewed first when :meth:`stale`."""
        if self.stale():
            return await self.renew()
        assert self._token is not None
        return self._token

    async def renew(self) -> str:
        """A new token from the provider, now the current one; raises :class:`TokenProviderError`."""
        token = await self.fetch()
        self.adopt(token)
        return token

    async def fetch(self) -> str:
        """A new token from the provider, not yet the current one (a refresh the server may refuse).

        Raises :class:`TokenProviderError` when the provider fails or there is none.
        """
        if self.provider is None:
            raise TokenProviderError("a fixed token cannot be renewed")
        try:
            token = await self.provider()
        except Exception as exc:
            raise TokenProviderError(f"token_provider failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(token, str) or not token:
            raise TokenProviderError(f"token_provider returned {type(token).__name__}, not a non-empty str")
        self.calls += 1
        return token

    def adopt(self, token: str) -> None:
        """Make ``token`` (from :meth:`fetch`, taken by the server) the current one; its ``exp`` times the next renewal."""
        self._token, self._exp = token, token_expiry(token)
        self._rejected = False
        self._warned = False

    def next_renewal(self) -> float | None:
        """Seconds until the token should be renewed (a fixed one: until the expiry warning); None: no ``exp``."""
        if self._exp is None:
            return None
        return refresh_delay(self._exp, self._clock())

    def warn_expiring(self) -> None:
        """Log once per token that a fixed token is about to expire and cannot be renewed."""
        if self._warned or self._exp is None:
            return
        self._warned = True
        log.warning(
            "ticker client: the token expires in %.0f s and cannot be renewed (no token_provider); "
            "the server will then close the connection (4003)",
            max(0.0, self._exp - self._clock()),
        )
