"""A JWKS fetched over HTTP with aiohttp: its usable keys by ``kid``, refetched on an unknown ``kid``.

A refetch starts at most once per ``min_refresh`` seconds (counted from the start of the previous
fetch, the one at load included); verifications that meet an unknown ``kid`` while one runs wait
for it rather than start another. A refetch replaces the whole set, so a key the issuer removed is
refused from then on; a refetch that fails keeps the keys as they were (logged, without the URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt

from ticker.auth.keys import public_key_algorithms
from ticker.auth.options import KeyLoadError

log = logging.getLogger("ticker.auth")

FETCH_TIMEOUT = 10.0  # seconds for one JWKS request, connect to last byte
MAX_JWKS_BYTES = 256 * 1024
MAX_KEYS = 100  # keys of one set looked at
FLAG = "--jwt-jwks-url"


@dataclass(frozen=True, slots=True)
class JwksKey:
    """One usable key of the set: the cryptography key object and the algorithms it verifies."""

    key: Any
    algorithms: tuple[str, ...]


class JwksError(Exception):
    """A fetch that brought no usable key set; the message says why in one line."""


def parse_jwks(body: bytes) -> dict[str, JwksKey]:
    """The usable signing keys of JWKS document ``body`` by ``kid``; :class:`JwksError` when there is none.

    A key counts when it has a string ``kid`` (the first of a repeated one wins), is not for
    encryption (``use: enc``), is an RSA (2048 bits or more), P-256/384/521 or Ed25519/Ed448 key,
    and its ``alg``, if stated, is one that key verifies (then only that one).
    """
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise JwksError("the JWKS is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksError('the JWKS has no "keys" list')
    keys: dict[str, JwksKey] = {}
    for raw in doc["keys"][:MAX_KEYS]:
        if not isinstance(raw, dict) or not isinstance(raw.get("kid"), str) or raw.get("use") == "enc":
            continue
        if raw["kid"] in keys:
            continue
        try:
            jwk = jwt.PyJWK(raw)  # picks the algorithm from "alg", else from the key type
            allowed = public_key_algorithms(jwk.key)
        except Exception:  # a symmetric ("oct") key, a small RSA key, an unsupported curve or algorithm,
            continue  # or a malformed member (PyJWK raises TypeError and more on those)
        stated = raw.get("alg")
        if stated is not None:
            if not isinstance(stated, str) or stated not in allowed:
                continue
            allowed = (stated,)
        keys[raw["kid"]] = JwksKey(jwk.key, allowed)
    if not keys:
        raise JwksError("the JWKS has no usable key (each needs a kid and an RSA, EC or OKP signing key)")
    return keys


class JwksKeys:
    """The keys of the JWKS at ``url``; :meth:`load` fetches them, :meth:`find` looks a ``kid`` up."""

    def __init__(self, url: str, min_refresh: float, clock: Callable[[], float]) -> None:
        self._url = url
        self._min_refresh = min_refresh
        self._clock = clock
        self._keys: dict[str, JwksKey] = {}
        self._fetched_at = float("-inf")
        self._inflight: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        #: Fetches started (load included), for tests and logs.
        self.fetches = 0

    async def load(self) -> None:
        """The first fetch; :class:`KeyLoadError` (one line, naming the flag) when it brings no usable key."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT))
        self._fetched_at = self._clock()
        try:
            self._keys = await self._fetch()
        except JwksError as exc:
            await self.close()
            raise KeyLoadError(f"{FLAG}: {exc}") from None

    def get(self, kid: str) -> JwksKey | None:
        """The key ``kid`` as currently known (no fetch)."""
        return self._keys.get(kid)

    async def find(self, kid: str) -> JwksKey | None:
        """The key ``kid``, refetching the set first when it is unknown and the rate limit allows."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._inflight is None:
            if self._clock() - self._fetched_at < self._min_refresh:
                return None
            self._fetched_at = self._clock()
            self._inflight = asyncio.create_task(self._refetch())
        await asyncio.shield(self._inflight)
        return self._keys.get(kid)

    async def close(self) -> None:
        """Stop a refetch under way and close the HTTP session."""
        if self._inflight is not None:
            self._inflight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._inflight
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _refetch(self) -> None:
        try:
            keys = await self._fetch()
        except JwksError as exc:
            log.warning("JWKS refetch failed, keeping the %d known keys: %s", len(self._keys), exc)
        else:
            self._keys = keys
        finally:
            self._inflight = None

    async def _fetch(self) -> dict[str, JwksKey]:
        if self._session is None:
            raise JwksError("closed")
        self.fetches += 1
        try:
            async with self._session.get(self._url, headers={"Accept": "application/json"}) as resp:
                if resp.status != 200:
                    raise JwksError(f"the JWKS request answered HTTP {resp.status}")
                body = bytearray()
                async for chunk in resp.content.iter_any():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksError(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
        except TimeoutError:
            raise JwksError(f"the JWKS request took more than {FETCH_TIMEOUT:g} s") from None
        except aiohttp.InvalidURL:
            raise JwksError("the URL is not valid") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise JwksError(f"cannot fetch the JWKS: {type(exc).__name__}: {_first_line(exc)}") from None
        return parse_jwks(bytes(body))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no details"
