"""Keys and signed tokens for the auth tests: RSA, EC and Ed25519 key pairs, PEM and JWK forms, tokens.

Key generation uses ``cryptography``; signing uses PyJWT. RSA keys take a moment to generate:
:func:`rsa_key` caches one per size.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

#: A secret long enough for HS256, HS384 and HS512.
SECRET = "test-secret-" + "0123456789abcdef" * 4
Private = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@functools.cache
def rsa_key(bits: int = 2048, n: int = 0) -> rsa.RSAPrivateKey:
    """An RSA private key (``n`` tells apart several of the same size)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    """A fresh EC private key (P-256 by default)."""
    return ec.generate_private_key(curve or ec.SECP256R1())


def ed_key() -> ed25519.Ed25519PrivateKey:
    """A fresh Ed25519 private key."""
    return ed25519.Ed25519PrivateKey.generate()


def public_pem(key: Private) -> bytes:
    """The PEM (SubjectPublicKeyInfo) of ``key``'s public key."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_pem(key: Private) -> bytes:
    """The unencrypted PKCS#8 PEM of private ``key``."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def jwk(key: Private, kid: str | None, alg: str | None = None, **extra: Any) -> dict[str, Any]:
    """The public JWK of ``key`` with ``kid`` (and ``alg`` if given)."""
    out = _jwk_of(key)
    if kid is not None:
        out["kid"] = kid
    if alg is not None:
        out["alg"] = alg
    out.update(extra)
    return out


def _jwk_of(key: Private) -> dict[str, Any]:
    algo: Any
    if isinstance(key, rsa.RSAPrivateKey):
        algo = jwt.algorithms.RSAAlgorithm
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        algo = jwt.algorithms.ECAlgorithm
    else:
        algo = jwt.algorithms.OKPAlgorithm
    out: dict[str, Any] = json.loads(algo.to_jwk(key.public_key()))
    return out


def claims(sub: Any = "alice", ttl: float = 60.0, **extra: Any) -> dict[str, Any]:
    """Claims with ``sub`` and ``exp`` ``ttl`` seconds from now (None leaves a claim out via ``extra``)."""
    out: dict[str, Any] = {"exp": int(time.time() + ttl)}
    if sub is not None:
        out["sub"] = sub
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


def sign(
    payload: dict[str, Any], key: Private | str | bytes = SECRET, alg: str = "HS256", kid: str | None = None
) -> str:
    """``payload`` signed with ``key`` by ``alg`` (``kid`` in the header if given)."""
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(payload: dict[str, Any], secret: bytes) -> str:
    """An HS256 token made by hand, for keys PyJWT refuses to use as HMAC secrets (a PEM public key)."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(payload).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def unsigned(payload: dict[str, Any]) -> str:
    """A token with ``alg: none`` and an empty signature."""
    head = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{_b64(json.dumps(payload).encode())}."
