"""Token keys: the HMAC secret from the environment, a PEM public key, and which algorithms each key verifies.

A key decides its algorithms, never the token: the secret verifies only HS256/384/512 (each only
when the secret is at least as long as its hash, RFC 7518 §3.2), a public key only the asymmetric
algorithms of its type. ``none`` is never accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ticker.auth.options import SECRET_ENV, SECRET_FILE_ENV, KeyLoadError

HS_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
EDDSA = "EdDSA"
#: Every algorithm a public key may verify.
ASYMMETRIC = frozenset((*RSA_ALGORITHMS, *EC_ALGORITHMS.values(), EDDSA))
RSA_MIN_BITS = 2048
MAX_KEY_FILE_BYTES = 64 * 1024


def load_secret(env: Mapping[str, str]) -> bytes | None:
    """The HMAC secret of ``TICKER_JWT_SECRET``, else of the file ``TICKER_JWT_SECRET_FILE`` names; None if neither is set.

    Raises :class:`KeyLoadError` for an unreadable or empty file, or a secret shorter than 32 bytes.
    """
    secret = env.get(SECRET_ENV, "").strip().encode("utf-8")
    source = SECRET_ENV
    if not secret:
        path = env.get(SECRET_FILE_ENV, "").strip()
        if not path:
            return None
        source = SECRET_FILE_ENV
        try:
            with open(path, "rb") as fh:
                secret = fh.read(MAX_KEY_FILE_BYTES).strip()
        except OSError as exc:
            raise KeyLoadError(f"{SECRET_FILE_ENV}: cannot read {path!r}: {exc.strerror or exc}") from None
        if not secret:
            raise KeyLoadError(f"{SECRET_FILE_ENV}: {path!r} is empty")
    if len(secret) < HS_MIN_BYTES["HS256"]:
        raise KeyLoadError(f"{source}: the secret is {len(secret)} bytes long; HS256 needs at least 32")
    return secret


def secret_algorithms(secret: bytes) -> tuple[str, ...]:
    """The HS algorithms ``secret`` is long enough for."""
    return tuple(alg for alg, size in HS_MIN_BYTES.items() if len(secret) >= size)


def public_key_algorithms(key: Any) -> tuple[str, ...]:
    """The algorithms public key ``key`` (a cryptography object) verifies; ``ValueError`` says why none."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < RSA_MIN_BITS:
            raise ValueError(f"the RSA key has {key.key_size} bits; at least {RSA_MIN_BITS} are needed")
        return RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = EC_ALGORITHMS.get(key.curve.name)
        if alg is None:
            raise ValueError(f"the EC curve {key.curve.name} is not one of P-256, P-384, P-521")
        return (alg,)
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return (EDDSA,)
    raise ValueError(f"a {type(key).__name__} cannot verify tokens (RSA, EC or Ed25519/Ed448 needed)")


def load_public_key(path: str) -> tuple[Any, tuple[str, ...]]:
    """The public key in PEM file ``path`` (a public key or a certificate) and its algorithms.

    Raises :class:`KeyLoadError` naming the flag and the problem.
    """
    flag = "--jwt-public-key"
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyLoadError(f"{flag}: cannot read {path!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyLoadError(f"{flag}: {path!r} is larger than {MAX_KEY_FILE_BYTES} bytes")
    if b"PRIVATE KEY-----" in data:
        raise KeyLoadError(f"{flag}: {path!r} holds a private key; give the public key")
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyLoadError(f"{flag}: {path!r} does not parse as a PEM public key or certificate") from None
    try:
        return key, public_key_algorithms(key)
    except ValueError as exc:
        raise KeyLoadError(f"{flag}: {path!r}: {exc}") from None
