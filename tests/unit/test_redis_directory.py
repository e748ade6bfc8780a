"""The symbol directory's Redis codec (pure, no Redis needed): hash values, meta, and the edge's directory."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from ticker.broker import redis_directory as rd
from ticker.broker import redis_layout as rc
from ticker.directory import Directory, Known, SymbolInfo

AAPL = SymbolInfo("AAPL", "Apple Inc.", "NASDAQ", "stock", "USD")
SPY = SymbolInfo("SPY", "SPDR S&P 500 ETF Trust", "NYSE Arca", "etf", "USD")


def test_layout_names():
    lay = rc.Layout("tk")
    assert lay.directory == "tk:directory" and lay.directory_meta == "tk:directory:meta"
    assert lay.directory_tmp("pub1") == "tk:directory:tmp:pub1"


def test_an_entry_round_trips_compactly():
    raw = rd.encode_info(AAPL)
    assert raw == b'{"name":"Apple Inc.","exchange":"NASDAQ","type":"stock","currency":"USD"}'
    assert rd.decode_info("AAPL", raw) == AAPL


@pytest.mark.parametrize(
    ("symbol", "raw"),
    [
        ("AAPL", b"not json"),
        ("AAPL", b"[1]"),
        ("AAPL", b'{"exchange":"X","type":"stock"}'),  # no name
        ("AAPL", b'{"name":"A","type":""}'),
        ("AAPL", b'{"name":"A","type":"stock","currency":5}'),
        ("aapl", b'{"name":"A","type":"stock"}'),  # not as a client subscribes to it
        ("BAD SYM", b'{"name":"A","type":"stock"}'),
    ],
)
def test_malformed_entries_are_refused(symbol: str, raw: bytes):
    with pytest.raises(ValueError):
        rd.decode_info(symbol, raw)


def test_decoding_rows_skips_malformed_ones_and_shares_repeated_strings():
    rows = {
        b"AAPL": rd.encode_info(AAPL),
        b"MSFT": rd.encode_info(SymbolInfo("MSFT", "Microsoft Corporation", "NASDAQ")),
        b"BAD": b"{",
        b"\xff": rd.encode_info(AAPL),
    }
    out = asyncio.run(rd.decode_rows(rows))
    assert sorted(e.symbol for e in out) == ["AAPL", "MSFT"]
    assert out[0].exchange is out[1].exchange  # one string for the many entries of one exchange


def test_meta_round_trips():
    meta = rd.DirectoryMeta("host:1:ab", 7, ("finnhub",), 2)
    assert orjson.loads(meta.encode()) == {
        "publisher": "host:1:ab",
        "version": 7,
        "complete": False,
        "loading": ["finnhub"],
        "symbols": 2,
    }
    assert rd.DirectoryMeta.decode(meta.encode()) == meta
    done = rd.DirectoryMeta.decode(b'{"publisher":"p","version":3,"complete":true,"loading":[],"symbols":1}')
    assert done.complete and done.version == 3


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[]",
        b'{"version":1}',
        b'{"publisher":"p","version":"1"}',
        b'{"publisher":"p","version":true}',
        b'{"publisher":"p","version":1,"loading":"sim"}',
        b'{"publisher":"p","version":1,"complete":true,"loading":["sim"]}',
    ],
)
def test_malformed_meta_is_refused(raw: bytes):
    with pytest.raises(ValueError):
        rd.DirectoryMeta.decode(raw)


def test_incomplete_without_a_loading_feed_stays_incomplete():
    meta = rd.DirectoryMeta.decode(b'{"publisher":"p","version":1,"complete":false}')
    assert not meta.complete


def test_the_edge_directory_before_any_publisher_wrote_one_is_all_pending():
    d = rd.build(None, ())
    assert d.known("AAPL") is Known.PENDING and not d.complete


def test_the_edge_directory_knows_what_the_publisher_knows():
    loading = rd.build(rd.DirectoryMeta("p", 1, ("finnhub",)), [AAPL])
    assert loading.known("AAPL") is Known.KNOWN and loading.known("NOPE") is Known.PENDING
    assert loading.get("AAPL") == AAPL
    done = rd.build(rd.DirectoryMeta("p", 2), [AAPL, SPY])
    assert done.complete and done.known("NOPE") is Known.UNKNOWN and done.symbols() == ["AAPL", "SPY"]
    empty = rd.build(rd.DirectoryMeta("p", 3), [])
    assert empty.complete and empty.known("AAPL") is Known.UNKNOWN


def test_the_publisher_directory_says_which_sources_are_loading():
    d = Directory()
    d.expect("simulated")
    d.expect("finnhub")
    d.replace("simulated", [AAPL])
    assert d.loading() == ["finnhub"]
    d.replace("finnhub", [])
    assert d.loading() == []
