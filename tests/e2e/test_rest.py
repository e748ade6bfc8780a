"""``GET /api/quotes``: a JSON snapshot, never cached, with clear 400s for bad symbols."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.inprocess import InProcessServer
from tests.support.timing import timeout


@pytest.fixture
async def http(inprocess: InProcessServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=inprocess.url, timeout=timeout(5)) as client:
        yield client


async def test_quotes_snapshot_is_not_cached(http: httpx.AsyncClient):
    r = await http.get("/api/quotes", params={"symbols": "aapl,MSFT,AAPL"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    data = r.json()["data"]
    assert sorted(e["s"] for e in data) == ["AAPL", "MSFT"]  # normalized, duplicates once
    for e in data:
        assert {"s", "p", "t", "q"} <= e.keys()
    everything = (await http.get("/api/quotes")).json()["data"]
    assert {"AAPL", "MSFT"} <= {e["s"] for e in everything}


@pytest.mark.parametrize(
    ("symbols", "code", "needle"),
    [
        ("AAPL,bad$", "invalid_symbol", "'bad$'"),
        ("", "invalid_symbol", "expected 1-32 characters"),
        ("x" * 33, "invalid_symbol", "expected 1-32 characters"),
        (
            ",".join(f"S{i}" for i in range(501)),
            "too_many_symbols",
            "501 symbols requested; the limit is 500 per request",
        ),
    ],
)
async def test_bad_symbols_get_a_clear_400(http: httpx.AsyncClient, symbols: str, code: str, needle: str):
    r = await http.get("/api/quotes", params={"symbols": symbols})
    assert r.status_code == 400
    assert r.headers["cache-control"] == "no-store" and r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert err["code"] == code and needle in err["message"]


async def test_quotes_ignore_empty_items_and_repeats(http: httpx.AsyncClient):
    r = await http.get("/api/quotes?symbols=aapl,,AAPL,msft,")
    assert sorted(e["s"] for e in r.json()["data"]) == ["AAPL", "MSFT"]
