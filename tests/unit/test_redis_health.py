"""The publisher's health report (pure, no Redis needed): the feed states it carries to edge nodes, and its codec."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from feeds.states import feed_state, owner
from tests.support.fakes.feed import StubFeed
from ticker.broker import redis_health as rh
from ticker.broker import redis_layout as rc
from ticker.directory import Directory, SymbolInfo
from ticker.status import CLOSED, DOWN, HALTED, SymbolStatus

NOW = 1000.0


def up_feed(name: str, owned: Callable[[str], bool] = lambda s: True, steady: bool = False) -> StubFeed:
    """A feed that owns the symbols ``owned`` accepts, up with data a second ago."""
    return StubFeed(name, owned, steady, data_at=NOW - 1.0)


def test_layout_name():
    assert rc.Layout("tk").health == "tk:health"


def test_a_feed_says_down_stale_or_its_own_word_in_that_order():
    feed = up_feed("replay", steady=True)
    feed.said["AAA"] = SymbolStatus(HALTED, "trading halted")
    assert feed_state(feed, "BBB", NOW, 15.0) is None
    assert feed_state(feed, "AAA", NOW, 15.0) == SymbolStatus(HALTED, "trading halted")
    feed._health.last_data = NOW - 20.0
    assert feed_state(feed, "AAA", NOW, 15.0) == SymbolStatus(
        DOWN, "feed replay has sent no data for more than 15 s"
    )
    assert feed_state(feed, "AAA", NOW, None) == SymbolStatus(HALTED, "trading halted")  # silence no fault
    feed.steady = False  # a provider's silence is a closed market, not a fault
    assert feed_state(feed, "BBB", NOW, 15.0) is None
    feed._mark_down("the recording ended")
    assert feed_state(feed, "AAA", NOW, 15.0) == SymbolStatus(
        DOWN, "feed replay is down: the recording ended"
    )
    feed._mark_down("")
    assert feed_state(feed, "AAA", NOW, 15.0) == SymbolStatus(DOWN, "feed replay is down: not connected")


def test_the_feed_of_a_symbol_is_the_one_listing_it_else_the_first_owner():
    a, b = up_feed("a"), up_feed("b")
    d = Directory()
    d.replace("b", [SymbolInfo("XYZ", "Xyz", "X", "stock", "USD")])
    assert owner([a, b], "XYZ") is a
    assert owner([a, b], "XYZ", d) is b
    assert owner([a, b], "QQQ", d) is a
    assert owner([up_feed("c", owned=lambda s: s.startswith("BTC"))], "AAPL") is None


def test_the_report_holds_every_feed_and_only_the_carried_symbols_that_are_not_live():
    stocks = up_feed("simulated", owned=lambda s: not s.startswith("BTC"), steady=True)
    crypto = up_feed("binance", owned=lambda s: s.startswith("BTC"))
    stocks.said["IBM"] = SymbolStatus(CLOSED, "market closed; opens Mon 09:30 ET")
    crypto._mark_down("cannot reach stream.binance.com: DNS lookup failed")
    r = rh.report("pub-1", [crypto, stocks], {"AAPL", "IBM", "BTCUSDT", "BTCEUR"}, NOW, 15.0)
    assert r.publisher == "pub-1"
    assert r.feeds == {
        "simulated": rh.FeedReport(True, "", 1.0, True),
        "binance": rh.FeedReport(False, "cannot reach stream.binance.com: DNS lookup failed", 1.0, False),
    }
    down = SymbolStatus(DOWN, "feed binance is down: cannot reach stream.binance.com: DNS lookup failed")
    assert r.symbols == {
        "BTCEUR": down,
        "BTCUSDT": down,
        "IBM": SymbolStatus(CLOSED, "market closed; opens Mon 09:30 ET"),
    }
    # Symbols nobody carries are not reported, whatever the feed says of them.
    assert "IBM" not in rh.report("pub-1", [stocks], {"AAPL"}, NOW, 15.0).symbols


def test_a_feed_without_data_yet_reports_no_quiet_time():
    feed = up_feed("replay", steady=True)
    feed._health.last_data = None
    r = rh.report("p", [feed], {"AAA"}, NOW, 15.0)
    assert r.feeds["replay"].quiet_s is None and r.symbols == {}


def test_the_report_round_trips_and_shares_equal_states():
    feed = up_feed("replay", steady=True)
    feed._mark_down("the recording ended")
    r = rh.report("pub-1", [feed], {"AAA", "BBB"}, NOW, 15.0)
    raw = r.encode()
    assert orjson.loads(raw) == {
        "publisher": "pub-1",
        "feeds": {"replay": {"up": False, "reason": "the recording ended", "quiet_s": 1.0, "steady": True}},
        "symbols": {
            "AAA": {"state": "down", "reason": "feed replay is down: the recording ended"},
            "BBB": {"state": "down", "reason": "feed replay is down: the recording ended"},
        },
    }
    back = rh.HealthReport.decode(raw)
    assert back == r
    assert back.symbols["AAA"] is back.symbols["BBB"]  # one object per distinct state


def test_live_entries_are_dropped_on_reading():
    raw = orjson.dumps({"publisher": "p", "symbols": {"AAA": {"state": "live", "reason": ""}}})
    assert rh.HealthReport.decode(raw).symbols == {}


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[]",
        b'{"feeds":{}}',
        b'{"publisher":"p","symbols":[]}',
        b'{"publisher":"p","symbols":{"bad sym":{"state":"down","reason":"x"}}}',
        b'{"publisher":"p","symbols":{"AAA":{"state":"sleeping","reason":"x"}}}',
        b'{"publisher":"p","symbols":{"AAA":{"state":"down","reason":3}}}',
        b'{"publisher":"p","symbols":{"AAA":"down"}}',
        b'{"publisher":"p","feeds":{"f":{"up":"yes"}}}',
        b'{"publisher":"p","feeds":{"f":{"up":true,"quiet_s":true}}}',
    ],
)
def test_a_malformed_report_is_refused(raw: bytes):
    with pytest.raises(ValueError, match="malformed health report"):
        rh.HealthReport.decode(raw)
