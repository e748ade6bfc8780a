"""The ``access`` flags of ``ticker serve``: ``--auth``, the token keys and the per-user limits.

The HMAC secret is no flag: it comes only from ``TICKER_JWT_SECRET`` or the file named by
``TICKER_JWT_SECRET_FILE`` (see :func:`ticker.auth.keys.load_secret`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ticker.errors import OptionError
from ticker.options import option, positive

ACCESS = "access"  # the --help heading of these flags
AUTH_MODES = ("none", "jwt")
SECRET_ENV = "TICKER_JWT_SECRET"
SECRET_FILE_ENV = "TICKER_JWT_SECRET_FILE"


class KeyLoadError(OptionError):
    """A token key that does not load (no key at all, an unreadable file, a bad PEM, an unusable JWKS).

    Its message is one line naming what is wrong; it never holds a secret.
    """


def _http_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise OptionError("must be an http:// or https:// URL")
    return text.strip()


def seconds(text: str) -> float:
    """A duration in seconds, 0 or more."""
    value = float(text)
    if not value >= 0:
        raise OptionError(f"must be 0 or more, got {text!r}")
    return value


def count(text: str) -> int:
    """A count, 0 or more."""
    value = int(text)
    if value < 0:
        raise OptionError(f"must be 0 or more, got {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class AuthOptions:
    """Who may connect (``--auth``), how tokens are checked, and the limits that follow from a token."""

    auth: str = option(
        "none",
        "none: anybody who reaches the port; jwt: every data transport needs a signed token",
        env="AUTH",
        choices=AUTH_MODES,
        group=ACCESS,
    )
    jwt_public_key: str | None = option(
        None,
        "PEM file of the public key (or certificate) that verifies RS*/PS*/ES*/EdDSA tokens",
        env="JWT_PUBLIC_KEY",
        metavar="FILE",
        group=ACCESS,
    )
    jwt_jwks_url: str | None = option(
        None,
        "URL of a JWKS whose keys (by kid) verify RS*/PS*/ES*/EdDSA tokens",
        env="JWT_JWKS_URL",
        parse=_http_url,
        metavar="URL",
        group=ACCESS,
    )
    jwt_jwks_min_refresh: float = option(
        30.0,
        "seconds between two refetches of the JWKS on an unknown kid (30)",
        env="JWT_JWKS_MIN_REFRESH",
        parse=positive(float),
        group=ACCESS,
    )
    jwt_audience: str | None = option(
        None,
        "required aud of tokens (default: tokens with an aud are refused)",
        env="JWT_AUDIENCE",
        group=ACCESS,
    )
    jwt_issuer: str | None = option(None, "required iss of tokens", env="JWT_ISSUER", group=ACCESS)
    jwt_leeway: float = option(
        0.0,
        "seconds of clock skew allowed on exp, nbf and iat (0)",
        env="JWT_LEEWAY",
        parse=seconds,
        group=ACCESS,
    )
    auth_timeout: float = option(
        10.0,
        "seconds a WebSocket without a token has to send its auth message (10)",
        env="AUTH_TIMEOUT",
        parse=positive(float),
        group=ACCESS,
    )
    max_connections_per_user: int = option(
        0,
        "concurrent connections per token sub on this node, unless the token says (0: no cap)",
        env="MAX_CONNECTIONS_PER_USER",
        parse=count,
        group=ACCESS,
    )
    delay: float = option(
        900.0,
        "seconds by which the delayed tier lags real time (900)",
        env="DELAY",
        parse=positive(float),
        group=ACCESS,
    )
    token_url: str | None = option(
        None,
        'the page gets its token from this endpoint (fetched with credentials; answers {"token": ...})',
        env="TOKEN_URL",
        metavar="URL",
        group=ACCESS,
    )
