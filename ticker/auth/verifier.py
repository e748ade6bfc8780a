"""Verifying a signed token (JWT, with PyJWT) into the :class:`~ticker.entitlements.Identity` behind a connection.

Keys may come from up to three sources at once, each verifying only its own algorithms:

- the secret (``TICKER_JWT_SECRET`` or ``TICKER_JWT_SECRET_FILE``): HS256, HS384, HS512;
- ``--jwt-public-key``: RS*/PS* (RSA), ES256/384/512 (by curve) or EdDSA, for tokens without a ``kid``
  (or with any ``kid`` when there is no JWKS);
- ``--jwt-jwks-url``: the same algorithms, the key picked by the token's ``kid``.

The token's ``alg`` only picks among the configured keys: an HS token never meets a public key,
and ``none`` is refused. ``sub`` (a non-empty string) and ``exp`` are required; ``aud`` and ``iss``
must match ``--jwt-audience`` and ``--jwt-issuer`` (a token with an ``aud`` is refused when no
audience is configured, RFC 7519 §4.1.3); ``--jwt-leeway`` applies to ``exp``, ``nbf`` and ``iat``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt

from ticker.auth.jwks import JwksKeys
from ticker.auth.keys import ASYMMETRIC, HS_MIN_BYTES, load_public_key, load_secret, secret_algorithms
from ticker.auth.options import SECRET_ENV, SECRET_FILE_ENV, AuthOptions, KeyLoadError
from ticker.entitlements import Entitlements, Identity
from ticker.errors import TokenRejected
from ticker.protocol import MAX_TOKEN_CHARS

log = logging.getLogger("ticker.auth")

_OPTIONS: Any = {"require": ["exp", "sub"]}


def _invalid(message: str) -> TokenRejected:
    return TokenRejected("invalid", message)


class TokenVerifier:
    """Checks tokens against the configured keys and claims; :meth:`load` builds one from :class:`AuthOptions`."""

    def __init__(
        self,
        opts: AuthOptions,
        secret: bytes | None = None,
        public_key: tuple[Any, tuple[str, ...]] | None = None,
        jwks: JwksKeys | None = None,
    ) -> None:
        self._secret = secret
        self._hs = secret_algorithms(secret) if secret is not None else ()
        self._public = public_key
        self._jwks = jwks
        self._audience = opts.jwt_audience
        self._issuer = opts.jwt_issuer
        self._leeway = opts.jwt_leeway

    @classmethod
    async def load(
        cls,
        opts: AuthOptions,
        env: Mapping[str, str] = os.environ,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> TokenVerifier:
        """Load every configured key (fetching the JWKS); :class:`KeyLoadError` when one fails or none is set.

        ``clock`` (monotonic seconds) paces the JWKS refetches.
        """
        secret = load_secret(env)
        public = load_public_key(opts.jwt_public_key) if opts.jwt_public_key else None
        if secret is None and public is None and not opts.jwt_jwks_url:
            raise KeyLoadError(
                f"--auth jwt needs a key: set {SECRET_ENV} (or {SECRET_FILE_ENV}), --jwt-public-key or --jwt-jwks-url"
            )
        jwks = None
        if opts.jwt_jwks_url:
            jwks = JwksKeys(opts.jwt_jwks_url, opts.jwt_jwks_min_refresh, clock)
            await jwks.load()
        return cls(opts, secret, public, jwks)

    @property
    def sources(self) -> str:
        """The key sources in use, for the start-up log (no key material)."""
        names = [f"secret ({', '.join(self._hs)})"] if self._secret is not None else []
        if self._public is not None:
            names.append(f"public key ({', '.join(self._public[1])})")
        if self._jwks is not None:
            names.append("JWKS")
        return ", ".join(names)

    async def verify(self, token: str) -> Identity:
        """The identity ``token`` proves; :class:`TokenRejected` (``expired`` or ``invalid``) otherwise.

        Only a token whose ``kid`` the JWKS does not know yet waits (for a refetch). Whatever a client
        sends, nothing but :class:`TokenRejected` comes out.
        """
        try:
            return await self._verify(token)
        except (TokenRejected, asyncio.CancelledError):
            raise
        except Exception as exc:  # an odd token that trips PyJWT or cryptography: refused, never a 500
            log.debug("token refused on %s", type(exc).__name__)
            raise _invalid("malformed token") from None

    async def _verify(self, token: str) -> Identity:
        if not isinstance(token, str) or not token:
            raise _invalid("empty token")
        if len(token) > MAX_TOKEN_CHARS:
            raise _invalid("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except (
            Exception
        ):  # never a crash on what a client sent: PyJWT raises more than PyJWTError on odd input
            raise _invalid("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str):  # a list or an object would not even hash
            raise _invalid("algorithm not accepted")
        if alg in HS_MIN_BYTES:
            if alg not in self._hs:
                raise _invalid("algorithm not accepted")
            key: Any = self._secret
        elif alg in ASYMMETRIC:
            key, allowed = await self._public_key(header.get("kid"))
            if alg not in allowed:
                raise _invalid("algorithm not accepted")
        else:
            raise _invalid("algorithm not accepted")
        claims = self._decode(token, key, alg)
        sub, exp = claims["sub"], claims["exp"]
        if not isinstance(sub, str) or not sub:
            raise _invalid("sub must be a non-empty string")
        if isinstance(exp, bool) or not isinstance(exp, int | float) or not -1e12 < exp < 1e12:
            raise _invalid("exp must be a number")
        try:
            entitlements = Entitlements.from_claim(claims.get("ticker"))
        except ValueError as exc:
            raise _invalid(f"bad ticker claim: {exc}") from None
        return Identity(sub, float(exp), entitlements)

    async def close(self) -> None:
        """Close the JWKS client (a no-op without one)."""
        if self._jwks is not None:
            await self._jwks.close()

    async def _public_key(self, kid: object) -> tuple[Any, tuple[str, ...]]:
        jwks = self._jwks
        if jwks is not None and (kid is not None or self._public is None):
            if not isinstance(kid, str):
                raise _invalid("token has no kid")
            entry = jwks.get(kid) or await jwks.find(kid)
            if entry is None:
                raise _invalid("unknown key id")
            return entry.key, entry.algorithms
        if self._public is None:
            raise _invalid("algorithm not accepted")
        return self._public

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=_OPTIONS,
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("expired", "token expired") from None
        except jwt.ImmatureSignatureError:
            raise _invalid("token not valid yet") from None
        except jwt.InvalidSignatureError:
            raise _invalid("bad signature") from None
        except jwt.InvalidAudienceError:
            raise _invalid("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise _invalid("wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid(f"token lacks {exc.claim}") from None
        except jwt.InvalidAlgorithmError:
            raise _invalid("algorithm not accepted") from None
        except (jwt.PyJWTError, ValueError, TypeError):  # never a crash on what a client sent
            raise _invalid("malformed token") from None
