"""TokenVerifier with a secret and with PEM public keys, the key loaders, and JWKS parsing (no sockets)."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.jwtkeys import (
    SECRET,
    claims,
    ec_key,
    ed_key,
    forge_hs256,
    jwk,
    private_pem,
    public_pem,
    rsa_key,
    sign,
    unsigned,
)
from ticker.auth.jwks import JwksError, parse_jwks
from ticker.auth.options import AuthOptions, KeyLoadError
from ticker.auth.verifier import MAX_TOKEN_CHARS, TokenVerifier
from ticker.entitlements import EVERYTHING, Tier
from ticker.errors import OptionError, TokenRejected

ENV = {"TICKER_JWT_SECRET": SECRET}


def opts(**kw: object) -> AuthOptions:
    return AuthOptions(auth="jwt", **kw)  # type: ignore[arg-type]


async def hs_verifier(secret: str = SECRET, **kw: object) -> TokenVerifier:
    return await TokenVerifier.load(opts(**kw), {"TICKER_JWT_SECRET": secret})


async def pem_verifier(
    tmp_path: Path, key: object, env: dict[str, str] | None = None, **kw: object
) -> TokenVerifier:
    path = tmp_path / "key.pem"
    path.write_bytes(public_pem(key))  # type: ignore[arg-type]
    return await TokenVerifier.load(opts(jwt_public_key=str(path), **kw), env or {})


async def rejected(verifier: TokenVerifier, token: str) -> TokenRejected:
    with pytest.raises(TokenRejected) as info:
        await verifier.verify(token)
    assert token not in info.value.message or not token
    assert "\n" not in info.value.message
    return info.value


# -- what verifies -------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hs_tokens_verify_with_the_secret(alg: str) -> None:
    verifier = await hs_verifier()
    payload = claims("alice", ttl=60)
    identity = await verifier.verify(sign(payload, SECRET, alg))
    assert identity.sub == "alice"
    assert identity.exp == payload["exp"]
    assert identity.entitlements is EVERYTHING


@pytest.mark.parametrize(
    ("make", "alg"),
    [
        (lambda: rsa_key(), "RS256"),
        (lambda: rsa_key(), "RS512"),
        (lambda: rsa_key(), "PS256"),
        (lambda: ec_key(), "ES256"),
        (lambda: ec_key(ec.SECP384R1()), "ES384"),
        (lambda: ed_key(), "EdDSA"),
    ],
)
async def test_asymmetric_tokens_verify_with_a_pem_public_key(tmp_path: Path, make, alg: str) -> None:
    key = make()
    verifier = await pem_verifier(tmp_path, key)
    identity = await verifier.verify(sign(claims("bob"), key, alg))
    assert identity.sub == "bob"


async def test_a_pem_certificate_gives_its_public_key(tmp_path: Path) -> None:
    key = rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    path = tmp_path / "cert.pem"
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    verifier = await TokenVerifier.load(opts(jwt_public_key=str(path)), {})
    assert (await verifier.verify(sign(claims("carol"), key, "RS256"))).sub == "carol"


async def test_secret_and_public_key_together_each_verify_their_own(tmp_path: Path) -> None:
    key = rsa_key()
    verifier = await pem_verifier(tmp_path, key, env=ENV)
    assert (await verifier.verify(sign(claims("hs"), SECRET, "HS256"))).sub == "hs"
    assert (await verifier.verify(sign(claims("rs"), key, "RS256"))).sub == "rs"
    assert "secret" in verifier.sources and "public key" in verifier.sources


async def test_secret_from_a_file_with_a_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    verifier = await TokenVerifier.load(opts(), {"TICKER_JWT_SECRET_FILE": str(path)})
    assert (await verifier.verify(sign(claims(), SECRET))).sub == "alice"


async def test_the_ticker_claim_becomes_the_entitlements() -> None:
    verifier = await hs_verifier()
    ticker = {"realtime": ["AAPL", "BINANCE:*"], "delayed": ["*"], "max_symbols": 5, "max_connections": 2}
    ent = (await verifier.verify(sign(claims(ticker=ticker)))).entitlements
    assert ent.tier("AAPL") is Tier.REALTIME
    assert ent.tier("BINANCE:BTCUSDT") is Tier.REALTIME
    assert ent.tier("MSFT") is Tier.DELAYED
    assert (ent.max_symbols, ent.max_connections) == (5, 2)


async def test_audience_and_issuer_when_configured() -> None:
    verifier = await hs_verifier(jwt_audience="ticker", jwt_issuer="https://id.example")
    good = claims(aud="ticker", iss="https://id.example")
    assert (await verifier.verify(sign(good))).sub == "alice"
    assert (await verifier.verify(sign({**good, "aud": ["other", "ticker"]}))).sub == "alice"
    assert (await rejected(verifier, sign({**good, "aud": "other"}))).message == "wrong audience"
    assert (await rejected(verifier, sign({**good, "iss": "https://evil.example"}))).message == "wrong issuer"
    assert (await rejected(verifier, sign(claims(iss="https://id.example")))).message == "token lacks aud"
    assert (await rejected(verifier, sign(claims(aud="ticker")))).message == "token lacks iss"


async def test_a_token_with_an_audience_is_refused_when_none_is_configured() -> None:
    verifier = await hs_verifier()
    assert (await rejected(verifier, sign(claims(aud="ticker")))).reason == "invalid"


# -- what is refused -----------------------------------------------------------------------------


async def test_expired_is_its_own_reason_and_leeway_forgives_skew() -> None:
    token = sign(claims(ttl=-5))
    err = await rejected(await hs_verifier(), token)
    assert (err.reason, err.message) == ("expired", "token expired")
    assert (await (await hs_verifier(jwt_leeway=30.0)).verify(token)).sub == "alice"


async def test_not_yet_valid_nbf_and_iat_are_invalid_unless_within_leeway() -> None:
    soon = int(time.time()) + 20
    for payload in (claims(nbf=soon), claims(iat=soon)):
        err = await rejected(await hs_verifier(), sign(payload))
        assert (err.reason, err.message) == ("invalid", "token not valid yet")
        assert (await (await hs_verifier(jwt_leeway=60.0)).verify(sign(payload))).sub == "alice"


async def test_a_wrong_signature_is_invalid() -> None:
    verifier = await hs_verifier()
    other = sign(claims(), "another-secret-" + "x" * 40)
    assert (await rejected(verifier, other)).message == "bad signature"
    head, _body, sig = sign(claims("alice")).split(".")
    _h, body, _s = sign(claims("mallory")).split(".")
    assert (await rejected(verifier, f"{head}.{body}.{sig}")).message == "bad signature"
    err = await rejected(verifier, sign(claims(ttl=-60), "another-secret-" + "x" * 40))
    assert err.reason == "invalid"  # the signature is checked before the expiry: a forgery is never "expired"


async def test_alg_none_is_refused() -> None:
    err = await rejected(await hs_verifier(), unsigned(claims()))
    assert (err.reason, err.message) == ("invalid", "algorithm not accepted")


async def test_an_hs_token_never_meets_a_public_key(tmp_path: Path) -> None:
    key = rsa_key()
    verifier = await pem_verifier(tmp_path, key)
    forged = forge_hs256(claims(), public_pem(key))  # the classic algorithm-confusion attack
    assert (await rejected(verifier, forged)).message == "algorithm not accepted"


async def test_a_public_key_token_is_refused_by_a_secret_only_verifier() -> None:
    err = await rejected(await hs_verifier(), sign(claims(), rsa_key(), "RS256"))
    assert err.message == "algorithm not accepted"


async def test_an_algorithm_the_key_type_does_not_verify_is_refused(tmp_path: Path) -> None:
    p256 = ec_key()
    verifier = await pem_verifier(tmp_path, p256)
    assert (await rejected(verifier, sign(claims(), ec_key(ec.SECP384R1()), "ES384"))).message == (
        "algorithm not accepted"
    )
    assert (await rejected(verifier, sign(claims(), ec_key(), "ES256"))).message == "bad signature"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # signing the refused tokens
async def test_a_short_secret_verifies_only_the_hs_algorithms_it_is_long_enough_for() -> None:
    verifier = await hs_verifier("k" * 32)
    assert (await verifier.verify(sign(claims(), "k" * 32, "HS256"))).sub == "alice"
    for alg in ("HS384", "HS512"):
        assert (await rejected(verifier, sign(claims(), "k" * 32, alg))).message == "algorithm not accepted"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (lambda: {"exp": int(time.time()) + 60}, "token lacks sub"),
        (lambda: {"sub": "alice"}, "token lacks exp"),
        (lambda: claims(sub=""), "sub must be a non-empty string"),
        (lambda: claims(sub=42), "malformed token"),
        (lambda: claims(exp=str(int(time.time()) + 60)), "exp must be a number"),
    ],
)
async def test_sub_and_exp_are_required(payload: Callable[[], dict[str, Any]], message: str) -> None:
    # Built when the test runs, not when it is collected: the suite may run longer than a token lives.
    err = await rejected(await hs_verifier(), sign(payload()))
    assert (err.reason, err.message) == ("invalid", message)


@pytest.mark.parametrize(
    "ticker",
    [["AAPL"], {"realtime": "AAPL"}, {"realtime": [1]}, {"delayed": ["x" * 100]}, {"max_symbols": -1}],
)
async def test_a_bad_ticker_claim_is_invalid(ticker: object) -> None:
    err = await rejected(await hs_verifier(), sign(claims(ticker=ticker)))
    assert err.reason == "invalid" and err.message.startswith("bad ticker claim: ")


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "a.b", "...", "eyJhbGciOiJIUzI1NiJ9.e30.", "\x00"])
async def test_malformed_tokens_are_invalid(token: str) -> None:
    assert (await rejected(await hs_verifier(), token)).reason == "invalid"


async def test_an_oversized_token_is_refused_before_it_is_parsed() -> None:
    token = sign(claims(pad="x" * MAX_TOKEN_CHARS))
    err = await rejected(await hs_verifier(), token)
    assert (err.reason, err.message) == ("invalid", "token too long")


async def test_no_message_repeats_the_token() -> None:
    verifier = await hs_verifier()
    for token in (
        sign(claims(ttl=-5)),
        sign(claims(), "w" * 40),
        unsigned(claims()),
        sign(claims(ticker=[1])),
    ):
        err = await rejected(verifier, token)
        assert token not in err.message and token.split(".")[1] not in err.message


# -- keys that do not load -----------------------------------------------------------------------


async def load_error(env: dict[str, str], **kw: object) -> str:
    with pytest.raises(KeyLoadError) as info:
        await TokenVerifier.load(opts(**kw), env)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, OptionError)
    return message


async def test_no_key_at_all_names_every_source() -> None:
    message = await load_error({})
    assert "TICKER_JWT_SECRET" in message and "--jwt-public-key" in message and "--jwt-jwks-url" in message


async def test_an_unreadable_or_empty_secret_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    message = await load_error({"TICKER_JWT_SECRET_FILE": missing})
    assert message.startswith("TICKER_JWT_SECRET_FILE: cannot read") and "No such file" in message
    (tmp_path / "empty").write_text("\n")
    assert "is empty" in await load_error({"TICKER_JWT_SECRET_FILE": str(tmp_path / "empty")})


async def test_a_short_secret_is_refused_without_showing_it() -> None:
    message = await load_error({"TICKER_JWT_SECRET": "hunter2-hunter2"})
    assert "at least 32" in message and "hunter2" not in message


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"not a key", "does not parse as a PEM public key"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "does not parse"),
        (private_pem(ec_key()), "holds a private key"),
        (public_pem(rsa_key(1024)), "1024 bits"),
        (public_pem(ec_key(ec.SECP256K1())), "secp256k1"),
    ],
)
async def test_a_bad_pem_file(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(content)
    message = await load_error({}, jwt_public_key=str(path))
    assert message.startswith("--jwt-public-key: ") and needle in message


async def test_an_unreadable_pem_file(tmp_path: Path) -> None:
    message = await load_error({}, jwt_public_key=str(tmp_path / "missing.pem"))
    assert message.startswith("--jwt-public-key: cannot read")


# -- JWKS documents (the fetch itself is tests/e2e/test_auth_jwks.py) ----------------------------


def test_parse_jwks_keeps_usable_signing_keys_by_kid() -> None:
    rsa, p256, ed = rsa_key(), ec_key(), ed_key()
    doc = {
        "keys": [
            jwk(rsa, "r1"),
            jwk(p256, "e1", alg="ES256"),
            jwk(ed, "d1"),
            jwk(rsa, None),  # no kid
            jwk(rsa, "enc", use="enc"),
            jwk(rsa, "mismatch", alg="ES256"),
            jwk(rsa_key(1024), "small"),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "kid": "broken"},
            "junk",
        ]
    }
    keys = parse_jwks(json.dumps(doc).encode())
    assert set(keys) == {"r1", "e1", "d1"}
    assert keys["r1"].algorithms == ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    assert keys["e1"].algorithms == ("ES256",)
    assert keys["d1"].algorithms == ("EdDSA",)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"<html>", "not JSON"),
        (b"[]", '"keys"'),
        (b'{"keys": []}', "no usable key"),
        (b'{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "a"}]}', "no usable key"),
    ],
)
def test_parse_jwks_refuses_a_set_without_usable_keys(body: bytes, needle: str) -> None:
    with pytest.raises(JwksError, match=needle):
        parse_jwks(body)


@pytest.mark.parametrize(
    "header",
    [
        {"alg": ["HS256"]},
        {"alg": {"a": 1}},
        {"alg": None},
        {"alg": "HS256", "kid": [1]},
        {"alg": "RS256", "kid": {}},
    ],
)
async def test_a_forged_header_of_any_shape_is_refused_not_crashed_on(header: dict[str, Any]) -> None:
    import base64

    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = f"{part(header)}.{part({'sub': 'a', 'exp': 9_000_000_000})}.c2ln"
    assert (await rejected(await hs_verifier(), token)).reason == "invalid"


async def test_an_absurd_exp_is_refused_not_crashed_on() -> None:
    err = await rejected(await hs_verifier(), sign(claims(exp=10**400)))
    assert err.reason in ("invalid", "expired")
