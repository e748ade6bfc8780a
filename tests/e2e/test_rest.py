"""``GET /api/quotes``: a JSON snapshot, never cached, with clear 400s for bad symbols."""

from __future__ import annotations

import httpx
import pytest

from tests.support.serverproc import ServerProcess


def test_quotes_snapshot_is_not_cached(server: ServerProcess):
    r = httpx.get(server.url + "/api/quotes", params={"symbols": "aapl,MSFT,AAPL"}, timeout=5)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    data = r.json()["data"]
    assert sorted(e["s"] for e in data) == ["AAPL", "MSFT"]  # normalized, duplicates once
    for e in data:
        assert {"s", "p", "t", "q"} <= e.keys()
    everything = httpx.get(server.url + "/api/quotes", timeout=5).json()["data"]
    assert {"AAPL", "MSFT"} <= {e["s"] for e in everything}


@pytest.mark.parametrize(
    ("symbols", "code", "needle"),
    [
        ("AAPL,bad$", "invalid_symbol", "'bad$'"),
        ("", "invalid_symbol", "expected 1-32 characters"),
        ("x" * 33, "invalid_symbol", "expected 1-32 characters"),
        (",".join(f"S{i}" for i in range(501)), "too_many_symbols", "500"),
    ],
)
def test_bad_symbols_get_a_clear_400(server: ServerProcess, symbols: str, code: str, needle: str):
    r = httpx.get(server.url + "/api/quotes", params={"symbols": symbols}, timeout=5)
    assert r.status_code == 400
    assert r.headers["cache-control"] == "no-store" and r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert err["code"] == code and needle in err["message"]


def test_quotes_ignore_empty_items_and_repeats(server: ServerProcess):
    import json
    import urllib.request

    with urllib.request.urlopen(server.url + "/api/quotes?symbols=aapl,,AAPL,msft,", timeout=5) as r:
        assert sorted(e["s"] for e in json.loads(r.read())["data"]) == ["AAPL", "MSFT"]
