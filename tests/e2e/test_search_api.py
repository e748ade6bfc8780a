"""``GET /api/search`` and ``GET /api/symbols/<SYMBOL>`` against a real server: by ticker prefix and by
name, limits, "did you mean", a directory still loading, and ``--auth jwt``.

Most tests give the simulated market a directory of their own (its ``load_reference`` patched), so
that what is found does not depend on the bundled listings; one searches the bundled listings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from feeds.simulated import SimulatedFeed
from tests.support.inprocess import InProcessServer, serve_in_process
from tests.support.timing import eventually, timeout
from tests.support.tokens import SECRET, bearer, mint
from ticker.auth.options import AuthOptions
from ticker.directory import SymbolInfo

ENTRIES = [
    SymbolInfo("ZQXA", "Zyquonix Aerodynamics Holdings, Inc.", "NASDAQ"),
    SymbolInfo("ZQX", "Zyquonix Group plc", "NYSE"),
    SymbolInfo("ZQXAB", "Quantum Zyquonix Fund", "NYSE ARCA", "etf"),
    SymbolInfo("ZQ-USD", "Zedcoin / US Dollar", "COINBASE", "crypto"),
    SymbolInfo("ZQE/USD", "Zedland Euro / US Dollar", "FX", "fx", "USD"),
    *(SymbolInfo(f"ZQ{i:02d}", f"Zedquant Income Trust {i}", "NYSE") for i in range(15)),
]
FIELDS = {"s", "name", "exchange", "type", "currency"}


def with_directory(monkeypatch: pytest.MonkeyPatch, entries: list[SymbolInfo] | None) -> None:
    """The simulated market's directory is ``entries`` (None: it cannot tell, its symbols stay pending)."""

    async def load_reference(self: SimulatedFeed) -> list[SymbolInfo] | None:
        return entries

    monkeypatch.setattr(SimulatedFeed, "load_reference", load_reference)


async def loaded(srv: InProcessServer) -> None:
    await eventually(lambda: srv.node.directory.complete, what="the directory loaded")


@pytest.fixture
async def srv(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[InProcessServer]:
    with_directory(monkeypatch, ENTRIES)
    async with serve_in_process(symbols=["ZQXA"], sim_rate=5.0) as s:
        await loaded(s)
        yield s


@pytest.fixture
async def http(srv: InProcessServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=srv.url, timeout=timeout(5)) as client:
        yield client


async def found(http: httpx.AsyncClient, q: str, **params: Any) -> list[str]:
    r = await http.get("/api/search", params={"q": q, **params})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    results = r.json()["results"]
    assert all(set(e) == FIELDS for e in results)
    return [e["s"] for e in results]


async def test_search_by_ticker_prefix_exact_first_then_shorter(http: httpx.AsyncClient):
    assert await found(http, "zqxa") == ["ZQXA", "ZQXAB"]
    assert (await found(http, "ZQX"))[:3] == ["ZQX", "ZQXA", "ZQXAB"]
    assert await found(http, "zq-usd") == ["ZQ-USD"]


async def test_search_by_name(http: httpx.AsyncClient):
    assert await found(http, "zyquonix") == ["ZQX", "ZQXA", "ZQXAB"]  # each starts a word: by ticker
    assert await found(http, "Zyquonix Aero") == ["ZQXA"]
    assert await found(http, "zyquonix aerodynamics holdings, inc.") == ["ZQXA"]
    assert await found(http, "quonix") == ["ZQX", "ZQXA", "ZQXAB"]  # inside a word
    assert await found(http, "euro") == ["ZQE/USD"]
    assert await found(http, "nothing of the sort") == []
    assert await found(http, "") == []


async def test_search_entries_carry_the_directory_fields(http: httpx.AsyncClient):
    r = await http.get("/api/search", params={"q": "zedcoin"})
    assert r.json() == {
        "results": [
            {
                "s": "ZQ-USD",
                "name": "Zedcoin / US Dollar",
                "exchange": "COINBASE",
                "type": "crypto",
                "currency": "USD",
            }
        ]
    }


async def test_search_limit(http: httpx.AsyncClient):
    assert len(await found(http, "zedquant")) == 10  # the default
    assert await found(http, "zedquant", limit="3") == ["ZQ00", "ZQ01", "ZQ02"]
    assert len(await found(http, "zedquant", limit="50")) == 15


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({}, '"q"'),
        ({"limit": "5"}, '"q"'),
        ({"q": "zq", "limit": "0"}, '"limit"'),
        ({"q": "zq", "limit": "51"}, "from 1 to 50"),
        ({"q": "zq", "limit": "ten"}, '"limit"'),
        ({"q": "zq", "limit": ""}, '"limit"'),
        ({"q": "zq", "limit": "-1"}, '"limit"'),
    ],
)
async def test_search_bad_requests(http: httpx.AsyncClient, params: dict[str, str], needle: str):
    r = await http.get("/api/search", params=params)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "bad_request" and needle in err["message"]


@pytest.mark.parametrize(("path", "symbol"), [("ZQXA", "ZQXA"), ("zqxa", "ZQXA"), ("ZQE%2FUSD", "ZQE/USD")])
async def test_one_symbol(http: httpx.AsyncClient, path: str, symbol: str):
    r = await http.get(f"/api/symbols/{path}")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    entry = r.json()
    assert set(entry) == FIELDS and entry["s"] == symbol
    assert entry == next(e.to_json() for e in ENTRIES if e.symbol == symbol)


async def test_an_unknown_symbol_is_404_with_did_you_mean(http: httpx.AsyncClient):
    r = await http.get("/api/symbols/ZQXC")
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == "unknown_symbol" and err["symbols"] == ["ZQXC"]
    assert err["suggestions"]["ZQXC"][0] == "ZQXA"
    assert "No symbol ZQXC — did you mean ZQXA (Zyquonix Aerodynamics Holdings, Inc.)" in err["message"]
    far = (await http.get("/api/symbols/NOTHINGLIKEIT")).json()["error"]
    assert far["code"] == "unknown_symbol" and far["message"] == "No symbol NOTHINGLIKEIT."
    assert far["suggestions"] == {}


@pytest.mark.parametrize("path", ["bad%24", "x" * 33, "A%20B"])
async def test_a_malformed_symbol_is_400(http: httpx.AsyncClient, path: str):
    r = await http.get(f"/api/symbols/{path}")
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_symbol" and "expected 1-32 characters" in err["message"]


async def test_api_symbols_keeps_its_shape(http: httpx.AsyncClient):
    r = await http.get("/api/symbols")
    assert r.status_code == 200 and set(r.json()) == {"symbols"}


async def test_while_the_directory_loads(monkeypatch: pytest.MonkeyPatch):
    """A feed that cannot tell: a symbol no source has is not called unknown, and what one source has is found."""
    with_directory(monkeypatch, None)
    async with (
        serve_in_process(sim_rate=5.0, wait_for_directory=False) as srv,
        httpx.AsyncClient(base_url=srv.url) as http,
    ):
        srv.node.directory.replace("extra", ENTRIES[:2])
        assert await found(http, "zyquonix") == ["ZQX", "ZQXA"]
        assert (await http.get("/api/symbols/ZQX")).json()["s"] == "ZQX"
        r = await http.get("/api/symbols/ZQXB")
        assert r.status_code == 404
        err = r.json()["error"]
        assert err["code"] == "unknown_symbol" and "in the directory yet" in err["message"]
        assert not srv.node.directory.complete


async def test_the_bundled_directory_is_searched(inprocess: InProcessServer):
    """The simulated market's own directory (whatever the bundled listings hold of these two)."""
    d = inprocess.node.directory
    await eventually(lambda: d.get("AAPL") and d.get("TSLA"), what="AAPL and TSLA in the directory")
    async with httpx.AsyncClient(base_url=inprocess.url) as http:
        assert (await found(http, "aapl"))[0] == "AAPL"
        ts = await found(http, "ts", limit="50")
        prefixed = [s for s in ts if s.startswith("TS")]  # first, shorter first; then names with "ts"
        assert "TSLA" in prefixed and ts[: len(prefixed)] == prefixed and len(ts) > len(prefixed)
        assert [len(s) for s in prefixed] == sorted(len(s) for s in prefixed)
        assert (await found(http, "tesla"))[0] == "TSLA"
        assert (await found(http, "Tesla Inc"))[0] == "TSLA"
        assert (await found(http, "apple"))[0] == "AAPL"
        r = await http.get("/api/symbols/APPL")
        if d.get("APPL") is None:
            assert r.status_code == 404 and r.json()["error"]["suggestions"]["APPL"][0] == "AAPL"


# -- --auth jwt ------------------------------------------------------------------------------


@pytest.fixture
async def jwt_srv(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[InProcessServer]:
    monkeypatch.setenv("TICKER_JWT_SECRET", SECRET)
    with_directory(monkeypatch, ENTRIES)
    async with serve_in_process(sim_rate=5.0, access=AuthOptions(auth="jwt")) as s:
        await loaded(s)
        yield s


async def test_with_jwt_a_token_is_required_and_results_are_those_the_user_may_see(jwt_srv: InProcessServer):
    token = mint(realtime=["ZQXA"], delayed=["ZQ0*"])
    async with httpx.AsyncClient(base_url=jwt_srv.url, headers=bearer(token)) as http:
        assert await found(http, "zyquonix") == ["ZQXA"]  # ZQX, ZQXAB forbidden: left out
        assert await found(http, "zedquant", limit="50") == [f"ZQ{i:02d}" for i in range(10)]  # delayed: seen
        assert (await http.get("/api/symbols/ZQ01")).json()["s"] == "ZQ01"
        r = await http.get("/api/symbols/ZQX")
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_symbol"
        r = await http.get("/api/symbols/ZQXC")  # unknown: suggestions only among what the user may see
        assert r.status_code == 404 and r.json()["error"]["suggestions"] == {"ZQXC": ["ZQXA"]}
    async with httpx.AsyncClient(base_url=jwt_srv.url) as anonymous:
        for path in ("/api/search?q=zq", "/api/symbols/ZQXA"):
            r = await anonymous.get(path)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
        r = await anonymous.get("/api/search", params={"q": "zq", "access_token": mint()})
        assert r.status_code == 200 and r.json()["results"][0]["s"] == "ZQX"  # the shortest ticker first
