"""``--auth jwt`` against a real server: tokens on every transport, entitlements, the delayed tier,
refresh, expiry and per-user caps. The server runs in the test's event loop; clients are real."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.inprocess import InProcessServer, serve_in_process
from tests.support.timing import timeout
from tests.support.tokens import SECRET, bearer, mint
from tests.support.wsclient import recv, recv_until, send
from ticker.auth.options import AuthOptions

SYMBOLS = ["AAPL", "MSFT", "NVDA", "KO"]


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKER_JWT_SECRET", SECRET)
    monkeypatch.setenv("TICKER_METRICS_TOKEN", "metrics-token-for-tests")


def auth_server(**access: Any) -> AbstractAsyncContextManager[InProcessServer]:
    return serve_in_process(symbols=SYMBOLS, sim_rate=20.0, access=AuthOptions(auth="jwt", **access))


@pytest.fixture
async def srv(secret_env: None) -> AsyncIterator[InProcessServer]:
    async with auth_server(delay=3.0, auth_timeout=1.0, max_connections_per_user=2) as s:
        yield s


async def closed_with(ws: Any, within: float = 5.0) -> int:
    """Read until the server closes ``ws``; its close code."""
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(timeout(within)):
            while True:
                await ws.recv()
    rcvd = info.value.rcvd
    assert rcvd is not None
    return rcvd.code


async def metrics(s: InProcessServer) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{s.url}/metrics", headers=bearer("metrics-token-for-tests"))
        r.raise_for_status()
    from prometheus_client.parser import text_string_to_metric_families

    return {
        f"{sm.name}{sorted(sm.labels.items()) if sm.labels else ''}": sm.value
        for fam in text_string_to_metric_families(r.text)
        for sm in fam.samples
    }


# -- presenting a token ------------------------------------------------------------------------
async def test_header_query_and_first_message_tokens_all_admit(srv: InProcessServer):
    tok = mint()
    async with connect(f"{srv.ws_url}?symbols=AAPL", additional_headers=bearer(tok)) as ws:
        msg = await recv(ws)
        assert msg == {"type": "subscribed", "symbols": ["AAPL"], "delayed": [], "rates": {}}
    async with connect(f"{srv.ws_url}?access_token={tok}") as ws:
        await send(ws, {"op": "subscribe", "symbols": ["MSFT"]})
        assert (await recv(ws))["type"] == "subscribed"
    async with connect(srv.ws_url) as ws:
        await send(ws, {"op": "subscribe", "symbols": ["AAPL"]})
        err = await recv(ws)
        assert (err["type"], err["code"]) == ("error", "unauthorized")
    async with connect(srv.ws_url) as ws:
        await send(ws, {"op": "ping", "id": 1})
        assert await recv(ws) == {"type": "pong", "id": 1}
        await send(ws, {"op": "auth", "token": tok})
        auth = await recv(ws)
        assert auth["type"] == "authenticated" and auth["sub"] == "alice" and auth["exp"] > time.time()
        await send(ws, {"op": "subscribe", "symbols": ["AAPL"]})
        assert (await recv(ws))["symbols"] == ["AAPL"]
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{srv.url}/api/quotes?symbols=AAPL", headers=bearer(tok))
        assert r.status_code == 200 and r.json()["data"][0]["s"] == "AAPL"
        r = await http.get(f"{srv.url}/api/quotes?symbols=AAPL&access_token={tok}")
        assert r.status_code == 200
        r = await http.get(f"{srv.url}/api/symbols", headers=bearer(tok))
        assert r.status_code == 200 and "AAPL" in r.json()["symbols"]
        async with aconnect_sse(http, "GET", f"{srv.url}/sse?symbols=AAPL&access_token={tok}") as src:
            assert src.response.status_code == 200
            async for ev in src.aiter_sse():
                assert ev.event == "subscribed" and ev.json() == {
                    "type": "subscribed",
                    "symbols": ["AAPL"],
                    "delayed": [],
                    "rates": {},
                }
                break
        for path in ("/", "/healthz", "/readyz", "/config.json"):
            assert (await http.get(f"{srv.url}{path}")).status_code == 200, path


BAD_TOKENS = {
    "expired": lambda: mint(ttl=-30),
    "wrong signature": lambda: mint(key="another-secret-another-secret-0123456789"),
    "alg none": lambda: mint(algorithm="none", key=None),
    "not yet valid": lambda: mint(nbf=int(time.time()) + 600),
    "no sub": lambda: mint(sub=""),
    "garbage": lambda: "not.a.jwt",
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_a_bad_token_is_401_on_http_and_4001_in_auth(srv: InProcessServer, kind: str):
    tok = BAD_TOKENS[kind]()
    async with httpx.AsyncClient() as http:
        for path in ("/api/quotes?symbols=AAPL", "/api/symbols", "/sse?symbols=AAPL"):
            r = await http.get(f"{srv.url}{path}", headers=bearer(tok))
            assert r.status_code == 401, (kind, path)
            assert r.headers["WWW-Authenticate"].startswith('Bearer realm="ticker", error="invalid_token"')
            assert r.json()["error"]["code"] == "unauthorized"
            assert tok not in r.text
        r = await http.get(f"{srv.url}/api/quotes?symbols=AAPL")
        assert r.status_code == 401 and "error=" not in r.headers["WWW-Authenticate"]
    with pytest.raises(InvalidStatus) as info:
        async with connect(srv.ws_url, additional_headers=bearer(tok)):
            pass
    assert info.value.response.status_code == 401
    async with connect(srv.ws_url) as ws:
        await send(ws, {"op": "auth", "token": tok})
        assert await closed_with(ws) == 4001
    reasons = await metrics(srv)
    want = "expired" if kind == "expired" else "invalid"
    assert reasons[f"ticker_auth_failures_total[('reason', '{want}'), ('transport', 'ws')]"] >= 2


async def test_no_auth_within_the_timeout_closes_4001(srv: InProcessServer):
    async with connect(srv.ws_url) as ws:
        assert await closed_with(ws, within=5) == 4001


# -- entitlements --------------------------------------------------------------------------------
async def test_forbidden_symbols_on_every_transport(srv: InProcessServer):
    tok = mint(realtime=["AAPL"], delayed=["M*"])
    async with connect(srv.ws_url, additional_headers=bearer(tok)) as ws:
        await send(ws, {"op": "subscribe", "symbols": ["AAPL", "MSFT", "KO", "NVDA"]})
        err = await recv(ws)
        assert err["code"] == "forbidden_symbol" and err["symbols"] == ["KO", "NVDA"]
        assert await recv(ws) == {
            "type": "subscribed",
            "symbols": ["AAPL", "MSFT"],
            "delayed": ["MSFT"],
            "rates": {},
        }
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{srv.url}/api/quotes?symbols=AAPL,KO", headers=bearer(tok))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_symbol"
        assert "KO" in r.json()["error"]["message"]
        r = await http.get(f"{srv.url}/sse?symbols=AAPL,KO", headers=bearer(tok))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_symbol"
        r = await http.get(f"{srv.url}/api/symbols", headers=bearer(tok))
        assert set(r.json()["symbols"]) == {"AAPL", "MSFT"}
    found = await metrics(srv)
    for transport in ("ws", "sse", "rest"):
        assert (
            found[f"ticker_auth_failures_total[('reason', 'forbidden_symbol'), ('transport', '{transport}')]"]
            >= 1
        )


async def test_a_delayed_subscriber_gets_each_quote_no_earlier_than_the_delay_after_its_t(
    srv: InProcessServer,
):
    live_tok, late_tok = mint(sub="rt"), mint(sub="late", realtime=[], delayed=["*"])
    async with (
        connect(f"{srv.ws_url}?symbols=AAPL", additional_headers=bearer(live_tok)) as live,
        connect(f"{srv.ws_url}?symbols=AAPL", additional_headers=bearer(late_tok)) as late,
    ):
        assert (await recv(late))["delayed"] == ["AAPL"]

        async def arrivals(ws: Any, n: int) -> list[tuple[float, dict[str, Any]]]:
            out: list[tuple[float, dict[str, Any]]] = []
            async with asyncio.timeout(timeout(15)):
                while len(out) < n:
                    msg = await recv(ws, within=10)
                    if msg["type"] in ("quotes", "snapshot"):
                        out += [(time.time(), e) for e in msg["data"]]
            return out

        live_got, late_got = await asyncio.gather(arrivals(live, 20), arrivals(late, 3))
        assert all(at - e["t"] / 1000 < timeout(1.0) for at, e in live_got)  # real-time: at once
        for at, e in late_got:
            assert at - e["t"] / 1000 >= 3.0, e  # never before the delay
            assert at - e["t"] / 1000 < 3.0 + timeout(2.5), e
        qs = [e["q"] for _at, e in late_got]
        assert qs == sorted(qs)
        assert (await metrics(srv))["ticker_connections_delayed"] == 1


async def test_refresh_narrows_entitlements_without_reconnecting(srv: InProcessServer):
    async with connect(srv.ws_url) as ws:
        await send(ws, {"op": "auth", "token": mint()})
        await recv_until(ws, lambda m: m["type"] == "authenticated")
        await send(ws, {"op": "subscribe", "symbols": ["AAPL", "MSFT", "KO"]})
        await recv_until(ws, lambda m: m["type"] == "subscribed")
        await send(ws, {"op": "refresh", "token": mint(sub="mallory")})
        err = await recv_until(ws, lambda m: m["type"] == "error")
        assert err["code"] == "unauthorized"
        await send(ws, {"op": "refresh", "token": mint(ttl=900, realtime=["AAPL"], delayed=["MSFT"])})
        auth = await recv_until(ws, lambda m: m["type"] == "authenticated")
        assert auth["exp"] > time.time() + 800
        sub = await recv_until(ws, lambda m: m["type"] == "subscribed")
        assert sub == {"type": "subscribed", "symbols": ["AAPL", "MSFT"], "delayed": ["MSFT"], "rates": {}}
        err = await recv_until(ws, lambda m: m["type"] == "error")
        assert err["code"] == "forbidden_symbol" and err["symbols"] == ["KO"]
        msg = await recv_until(
            ws,
            lambda m: (
                (m["type"] == "quotes" and any(e["s"] == "KO" for e in m["data"]))
                or (m["type"] == "quotes" and any(e["s"] == "AAPL" for e in m["data"]))
            ),
        )
        assert all(e["s"] != "KO" for e in msg["data"])


async def test_the_connection_closes_4003_when_exp_passes(srv: InProcessServer):
    async with connect(srv.ws_url, additional_headers=bearer(mint(ttl=2))) as ws:
        assert await closed_with(ws, within=6) == 4003
    async with (
        httpx.AsyncClient(timeout=timeout(10)) as http,
        aconnect_sse(http, "GET", f"{srv.url}/sse?symbols=AAPL", headers=bearer(mint(ttl=2))) as src,
    ):
        started = time.monotonic()
        async for _ev in src.aiter_sse():
            pass  # the server ends the stream at exp
        assert time.monotonic() - started < timeout(6)


async def test_a_users_connection_cap_gives_429_and_4029(srv: InProcessServer):
    tok = mint(sub="bob")
    async with connect(srv.ws_url, additional_headers=bearer(tok)), connect(srv.ws_url) as second:
        await send(second, {"op": "auth", "token": tok})
        await recv_until(second, lambda m: m["type"] == "authenticated")
        with pytest.raises(InvalidStatus) as info:
            async with connect(srv.ws_url, additional_headers=bearer(tok)):
                pass
        assert info.value.response.status_code == 429
        async with connect(srv.ws_url) as third:
            await send(third, {"op": "auth", "token": tok})
            assert await closed_with(third) == 4029
        async with httpx.AsyncClient() as http:
            r = await http.get(f"{srv.url}/sse?symbols=AAPL", headers=bearer(tok))
            assert r.status_code == 429
        own = mint(sub="bob", ticker={"max_connections": 3})
        async with connect(srv.ws_url, additional_headers=bearer(own)) as ws:  # the token's cap wins
            await send(ws, {"op": "ping"})
            await recv(ws)
    # closing gives the slots back
    async with connect(srv.ws_url, additional_headers=bearer(tok)) as ws:
        await send(ws, {"op": "ping"})
        assert (await recv(ws))["type"] == "pong"


# -- keys and claims of a real process -----------------------------------------------------------
def test_rs256_with_a_pem_public_key_audience_and_issuer(tmp_path: Any):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.support.serverproc import ServerProcess

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "public.pem"
    pem.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    args = ["--auth", "jwt", "--jwt-public-key", str(pem), "--jwt-audience", "quotes", "--jwt-issuer", "idp"]

    def rs(**claims: Any) -> str:
        return mint(key=private, algorithm="RS256", **claims)

    with ServerProcess([*args, "--log-level", "warning"]) as srv:
        url = f"{srv.url}/api/quotes?symbols=AAPL"
        with httpx.Client(timeout=timeout(5)) as http:
            assert http.get(url, headers=bearer(rs(aud="quotes", iss="idp"))).status_code == 200
            for bad in (
                rs(aud="other", iss="idp"),  # wrong audience
                rs(aud="quotes", iss="other"),  # wrong issuer
                rs(iss="idp"),  # no audience
                mint(aud="quotes", iss="idp"),  # HS256: no secret configured, and never against a public key
            ):
                r = http.get(url, headers=bearer(bad))
                assert r.status_code == 401, r.text
        assert "BEGIN" not in srv.output() and SECRET not in srv.output()


async def test_a_jwks_served_locally_with_key_rotation(secret_env: None, monkeypatch: pytest.MonkeyPatch):
    from tests.support.fakes.jwks import FakeJwks
    from tests.support.jwtkeys import claims, jwk, rsa_key, sign
    from tests.support.timing import eventually

    monkeypatch.delenv("TICKER_JWT_SECRET")
    old, new = rsa_key(), rsa_key(2048, 1)
    async with (
        FakeJwks([jwk(old, "k1")]) as fake,
        auth_server(jwt_jwks_url=fake.url, jwt_jwks_min_refresh=0.2) as s,
    ):
        url = f"{s.url}/api/quotes?symbols=AAPL"
        k1, k2 = (
            sign(claims("alice"), old, "RS256", kid="k1"),
            sign(claims("bob"), new, "RS256", kid="k2"),
        )
        async with httpx.AsyncClient() as http:
            assert (await http.get(url, headers=bearer(k1))).status_code == 200
            async with connect(s.ws_url) as ws:  # the first-message path takes JWKS tokens too
                await send(ws, {"op": "auth", "token": k1})
                assert (await recv(ws))["sub"] == "alice"
            fake.keys = [jwk(new, "k2")]  # the issuer rotates

            async def new_key_accepted() -> bool:
                return (await http.get(url, headers=bearer(k2))).status_code == 200

            await eventually(new_key_accepted, what="the rotated key to be picked up")
            r = await http.get(url, headers=bearer(k1))
            assert r.status_code == 401 and "unknown key id" in r.json()["error"]["message"]
        assert fake.requests >= 2


async def test_a_basic_authorization_header_counts_as_no_token(srv: InProcessServer):
    """A browser behind a Basic-auth proxy attaches that header to the upgrade by itself."""
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    async with connect(srv.ws_url, additional_headers=basic) as ws:
        await send(ws, {"op": "auth", "token": mint()})
        assert (await recv(ws))["type"] == "authenticated"
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{srv.url}/api/symbols", headers=basic)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Bearer realm="ticker"'
        tok = mint()
        r = await http.get(f"{srv.url}/api/symbols?access_token={tok}", headers=basic)
        assert r.status_code == 200
