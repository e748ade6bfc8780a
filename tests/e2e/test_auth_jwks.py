"""Keys over the network and at start-up: a JWKS served by a local aiohttp server (rotation, refetch rate
limit, failures), and ``ticker serve --auth jwt`` refusing to start without a usable key."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.fakes.jwks import FakeJwks
from tests.support.jwtkeys import claims, ec_key, jwk, rsa_key, sign
from tests.support.timing import timeout
from ticker.auth.jwks import MAX_JWKS_BYTES
from ticker.auth.options import AuthOptions, KeyLoadError
from ticker.auth.verifier import TokenVerifier
from ticker.errors import TokenRejected

MIN_REFRESH = 30.0


class Clock:
    """Monotonic seconds that move only when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def jwks() -> AsyncIterator[FakeJwks]:
    async with FakeJwks([jwk(rsa_key(), "k1")]) as fake:
        yield fake


async def load(url: str, clock: Clock | None = None) -> TokenVerifier:
    opts = AuthOptions(auth="jwt", jwt_jwks_url=url, jwt_jwks_min_refresh=MIN_REFRESH)
    return await TokenVerifier.load(opts, {}, clock=clock or Clock())


async def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenRejected) as info:
        await verifier.verify(token)
    assert info.value.reason == "invalid"
    return info.value.message


async def test_tokens_verify_with_the_key_their_kid_names(jwks: FakeJwks) -> None:
    p256 = ec_key()
    jwks.keys.append(jwk(p256, "e1", alg="ES256"))
    verifier = await load(jwks.url)
    try:
        assert (await verifier.verify(sign(claims("alice"), rsa_key(), "RS256", kid="k1"))).sub == "alice"
        assert (await verifier.verify(sign(claims("bob"), p256, "ES256", kid="e1"))).sub == "bob"
        assert await refused(verifier, sign(claims(), rsa_key(), "RS256")) == "token has no kid"
        assert await refused(verifier, sign(claims(), rsa_key(2048, 1), "RS256", kid="k1")) == "bad signature"
        assert await refused(verifier, sign(claims(), p256, "ES256", kid="k1")) == "algorithm not accepted"
        assert jwks.requests == 1
    finally:
        await verifier.close()


async def test_rotation_picks_up_the_new_kid_after_a_refetch_and_refuses_the_old(jwks: FakeJwks) -> None:
    clock = Clock()
    verifier = await load(jwks.url, clock)
    old, new = rsa_key(), rsa_key(2048, 1)
    try:
        jwks.keys = [jwk(new, "k2")]  # the issuer rotates
        assert (await verifier.verify(sign(claims(), old, "RS256", kid="k1"))).sub == "alice"  # still cached
        token = sign(claims("rotated"), new, "RS256", kid="k2")
        assert await refused(verifier, token) == "unknown key id"  # too soon after the load to refetch
        assert jwks.requests == 1
        clock.now += MIN_REFRESH
        assert (await verifier.verify(token)).sub == "rotated"
        assert jwks.requests == 2
        assert await refused(verifier, sign(claims(), old, "RS256", kid="k1")) == "unknown key id"
        assert jwks.requests == 2
    finally:
        await verifier.close()


async def test_a_burst_of_unknown_kids_fetches_once_per_min_refresh(jwks: FakeJwks) -> None:
    clock = Clock()
    verifier = await load(jwks.url, clock)
    key = rsa_key()
    try:
        for round_ in (1, 2, 3):
            clock.now += MIN_REFRESH
            tokens = [sign(claims(), key, "RS256", kid=f"unknown-{round_}-{i}") for i in range(20)]
            results = await asyncio.gather(*(verifier.verify(t) for t in tokens), return_exceptions=True)
            assert all(isinstance(r, TokenRejected) and r.message == "unknown key id" for r in results)
            assert jwks.requests == 1 + round_
            await refused(verifier, tokens[0])  # the same second again: no fetch
            assert jwks.requests == 1 + round_
    finally:
        await verifier.close()


async def test_verifications_waiting_on_a_refetch_all_get_the_new_key(jwks: FakeJwks) -> None:
    clock = Clock()
    verifier = await load(jwks.url, clock)
    new = rsa_key(2048, 1)
    try:
        jwks.keys.append(jwk(new, "k2"))
        clock.now += MIN_REFRESH
        tokens = [sign(claims(f"u{i}"), new, "RS256", kid="k2") for i in range(10)]
        identities = await asyncio.gather(*(verifier.verify(t) for t in tokens))
        assert [i.sub for i in identities] == [f"u{i}" for i in range(10)]
        assert jwks.requests == 2
    finally:
        await verifier.close()


async def test_a_failed_refetch_keeps_the_known_keys(
    jwks: FakeJwks, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    verifier = await load(jwks.url, clock)
    try:
        jwks.status = 503
        clock.now += MIN_REFRESH
        assert await refused(verifier, sign(claims(), rsa_key(), "RS256", kid="k9")) == "unknown key id"
        assert jwks.requests == 2
        assert (await verifier.verify(sign(claims(), rsa_key(), "RS256", kid="k1"))).sub == "alice"
        assert "HTTP 503" in caplog.text and jwks.url not in caplog.text
    finally:
        await verifier.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks.json"


async def load_error(url: str) -> str:
    with pytest.raises(KeyLoadError) as info:
        await load(url)
    message = str(info.value)
    assert message.startswith("--jwt-jwks-url: ") and "\n" not in message
    return message


async def test_an_unreachable_jwks_at_load_is_a_key_load_error() -> None:
    assert "cannot fetch the JWKS" in await load_error(closed_port_url())


@pytest.mark.parametrize(
    ("status", "body", "needle"),
    [
        (404, None, "HTTP 404"),
        (200, b"<html>", "not JSON"),
        (200, b'{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}', "no usable key"),
        (200, b'{"keys": [' + b" " * MAX_JWKS_BYTES + b"]}", "larger than"),
    ],
)
async def test_a_jwks_without_usable_keys_at_load(status: int, body: bytes | None, needle: str) -> None:
    async with FakeJwks() as fake:
        fake.status, fake.body = status, body
        assert needle in await load_error(fake.url)


# -- ticker serve refuses to start -----------------------------------------------------------


def serve(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TICKER_JWT")}
    return subprocess.run(
        [sys.executable, "-m", "ticker", "serve", "--port", "0", "--auth", "jwt", *argv],
        capture_output=True,
        text=True,
        timeout=timeout(30),
        env={**base, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_with_auth_jwt_and_no_key_exits_2_with_one_line(workers: str) -> None:
    r = serve(["--workers", workers])
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ticker: error: --auth jwt needs a key") and "TICKER_JWT_SECRET" in lines[0]


def test_serve_with_a_bad_pem_exits_2_with_one_line(tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    pem.write_text("garbage")
    r = serve(["--jwt-public-key", str(pem)])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"ticker: error: --jwt-public-key: {str(pem)!r} does not parse as a PEM public key or certificate"
    ]


def test_serve_with_an_unreachable_jwks_exits_2_with_one_line() -> None:
    r = serve(["--jwt-jwks-url", closed_port_url()])
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ticker: error: --jwt-jwks-url: cannot fetch the JWKS")


def test_the_command_line_does_not_load_pyjwt_or_aiohttp() -> None:
    code = "import sys, ticker.cli.main; print(sorted(m for m in ('jwt', 'aiohttp', 'cryptography') if m in sys.modules))"
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout(30), check=True
    )
    assert r.stdout.strip() == "[]"
