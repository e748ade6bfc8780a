"""Alpaca adapter against the fake Alpaca stream: handshake, batching, documented error codes, trading
statuses (halts)."""

from __future__ import annotations

import logging

import pytest

from feeds.streaming.alpaca import AlpacaFeed
from tests.support.fakes.alpaca import FakeAlpaca
from tests.support.fakes.sink import fast_options, running
from tests.support.timing import eventually
from ticker.bars import Bar
from ticker.status import HALTED, UNAVAILABLE, SymbolStatus


@pytest.fixture
async def fake():
    f = FakeAlpaca(key="KEY", secret="SECRET")
    await f.start()
    yield f
    await f.close()


def make(fake: FakeAlpaca, **over) -> AlpacaFeed:
    kw = {"key_id": "KEY", "secret": "SECRET", **over}
    return AlpacaFeed(**kw, **fast_options(fake.url))


async def test_connected_auth_subscribe_then_batched_trades_and_quotes(fake):
    feed = make(fake)
    async with running(feed) as rec:
        feed.set_demand(frozenset({"AAPL", "AMD"}))
        await fake.wait_for(lambda: fake.symbols() == {"AAPL", "AMD"})
        assert fake.received[0] == {"action": "auth", "key": "KEY", "secret": "SECRET"}
        assert fake.received[1] == {
            "action": "subscribe",
            "trades": ["AAPL", "AMD"],
            "quotes": ["AAPL", "AMD"],
            "bars": ["AAPL", "AMD"],
            "updatedBars": ["AAPL", "AMD"],
            "statuses": ["AAPL", "AMD"],
        }
        await eventually(lambda: feed.confirmed == {"AAPL", "AMD"}, what="subscription ack")
        await fake.batch(
            fake.quote_item("AMD", 87.66, 87.68),
            fake.trade_item("AAPL", 126.55, size=1),
            {  # the fixture's bar, of a symbol not subscribed: dropped
                "T": "b",
                "S": "SPY",
                "o": 388.985,
                "h": 389.13,
                "l": 388.975,
                "c": 389.12,
                "v": 49378,
                "t": "2021-02-22T19:15:00Z",
            },
            fake.bar_item("AAPL", "b", 126.5, 126.6, 126.4, 126.55, 900, "2021-02-22T15:51:00Z"),
            fake.bar_item("AAPL", "u", 126.5, 126.7, 126.4, 126.6, 950, "2021-02-22T15:51:00Z"),
            fake.trade_item("AMD", 87.67, size=4),
        )
        await eventually(lambda: len(rec.quotes) == 3)
        amd = rec.last("AMD")
        assert (amd.price, amd.bid, amd.ask, amd.volume) == (87.67, 87.66, 87.68, 4)
        assert rec.quotes[0].price == 87.67  # a quote before any trade: the mid-point
        assert rec.last("AAPL").ts_ms == 1614009104208  # nanosecond RFC 3339, to the millisecond
        minute = 1614009060000  # 2021-02-22T15:51:00Z: the bar, then its correction, both final
        assert rec.bars == [
            ("AAPL", "1m", Bar(minute, 126.5, 126.6, 126.4, 126.55, 900), True),
            ("AAPL", "1m", Bar(minute, 126.5, 126.7, 126.4, 126.6, 950), True),
        ]
        assert not rec.errors


async def test_auth_failure_402_keeps_the_feed_down_with_the_reason(fake, caplog):
    feed = make(fake, secret="WRONG-SECRET")
    with caplog.at_level(logging.DEBUG):
        async with running(feed) as rec:
            await eventually(lambda: rec.errors["auth"] >= 2, what="auth failures, retried")
            health = feed.health()
            assert not health.up and "auth failed (402)" in health.reason
            assert "check ALPACA_KEY_ID and ALPACA_SECRET_KEY" in health.reason
            assert fake.auth_failures >= 2 and not fake.symbols()
    assert "WRONG-SECRET" not in caplog.text


async def test_symbol_limit_405_reports_the_refused_symbols(fake):
    fake.limit = 2
    feed = make(fake, source="sip")  # sip: no limit configured, Alpaca's own one applies
    async with running(feed) as rec:
        feed.set_demand(frozenset({"AAPL", "AMD"}))
        await fake.wait_for(lambda: fake.symbols() == {"AAPL", "AMD"})
        await eventually(lambda: feed.confirmed == {"AAPL", "AMD"})
        feed.set_demand(frozenset({"AAPL", "AMD", "NVDA"}))
        await eventually(lambda: rec.errors["symbol_limit"] >= 2, what="405 counted and NVDA reported")
        assert "NVDA" in feed.health().reason and feed.health().up
        assert fake.symbols() == {"AAPL", "AMD"}


async def test_iex_holds_at_most_30_symbols_in_one_batched_subscribe(fake):
    feed = make(fake)
    symbols = [f"S{i:02d}" for i in range(40)]
    async with running(feed) as rec:
        feed.set_demand(frozenset(symbols))
        await fake.wait_for(lambda: len(fake.symbols()) == 30)
        subs = [m for m in fake.received if m.get("action") == "subscribe"]
        assert len(subs) == 1 and subs[0]["trades"] == symbols[:30]
        assert rec.errors["symbol_limit"] == 10 and "limit of 30" in feed.health().reason
        assert feed.symbol_state("S35") == SymbolStatus(
            UNAVAILABLE, "over the provider plan's limit of 30 symbols"
        )
        assert feed.symbol_state("S05") is None
        feed.set_demand(frozenset(symbols[5:]))  # five leave: five of the others get their slots
        await fake.wait_for(lambda: set(fake.symbols()) == set(symbols[5:35]), what="the slots taken")
        await eventually(lambda: feed.symbol_state("S34") is None, what="S34 no longer over the limit")
        assert feed.symbol_state("S35") is not None


async def test_connection_limit_406_then_reconnect_once_the_other_connection_is_gone(fake):
    feed = make(fake)
    other = make(fake)
    async with running(other):
        await fake.wait_for(lambda: any(c.authed for c in fake.conns), what="first connection")
        async with running(feed) as rec:
            await eventually(lambda: rec.errors["connection_limit"] >= 1, what="406")
            assert "connection limit exceeded" in feed.health().reason
            await other.stop()
            await eventually(lambda: feed.health().up, what="reconnect after the other left")


async def test_slow_client_407_reconnects_and_resubscribes(fake):
    feed = make(fake)
    async with running(feed) as rec:
        feed.set_demand(frozenset({"AAPL"}))
        await fake.wait_for(lambda: fake.symbols() == {"AAPL"})
        await fake.slow_client()
        await eventually(lambda: rec.errors["slow_client"] == 1 and rec.reconnects == 1)
        await fake.wait_for(lambda: fake.symbols() == {"AAPL"}, what="resubscribe")


async def test_other_documented_errors_are_counted_not_fatal(fake):
    feed = make(fake)
    async with running(feed) as rec:
        await eventually(lambda: feed.health().up)
        for code, msg in [(400, "invalid syntax"), (403, "already authenticated"), (500, "internal error")]:
            await fake.batch({"T": "error", "code": code, "msg": msg})
        await eventually(lambda: rec.errors["upstream_error"] == 3)
        # One more on the same connection: had the feed given up on it, this one would not reach it.
        assert await fake.batch({"T": "error", "code": 500, "msg": "internal error"}) == 1
        await eventually(lambda: rec.errors["upstream_error"] == 4)
        assert feed.health().up and fake.connects == 1


async def test_a_trading_halt_makes_the_symbol_halted_until_trading_resumes(fake):
    feed = make(fake)
    async with running(feed) as rec:
        feed.set_demand(frozenset({"AAPL", "STRR"}))
        await eventually(lambda: feed.confirmed == {"AAPL", "STRR"}, what="subscription ack")
        # The fixture's halt: UTP code H, with Alpaca's status and reason messages as the reason.
        await fake.status(
            "AAPL", "H", "Trading Halt", "T12", "Trading Halted; For information requested by NASDAQ"
        )
        halted = SymbolStatus(HALTED, "Trading Halt: Trading Halted; For information requested by NASDAQ")
        await eventually(lambda: feed.symbol_state("AAPL") == halted, what="AAPL halted")
        assert feed.symbol_state("STRR") is None
        await fake.status("STRR", "2", "Trading Halt")  # CTA's halt code, without a reason message
        await eventually(lambda: feed.symbol_state("STRR") == SymbolStatus(HALTED, "Trading Halt"))
        await fake.status("AAPL", "Q", "Quotation Resumption", "C11")  # quotes again, trading still halted
        await fake.status("STRR", "E", "Short Sale Restriction")  # not a halt: nothing changes
        await fake.status("AAPL", "T", "Trading Resumption", "C11")  # the fixture's resumption
        await eventually(lambda: feed.symbol_state("AAPL") is None, what="AAPL trading again")
        assert feed.symbol_state("STRR") == SymbolStatus(HALTED, "Trading Halt")
        feed.set_demand(frozenset({"AAPL"}))  # nobody wants STRR any more: its halt is forgotten
        assert feed.symbol_state("STRR") is None
        assert not rec.errors and feed.health().up


async def test_statuses_refused_after_login_are_dropped_and_the_symbols_subscribed_without(fake, caplog):
    fake.refuse_statuses = True
    feed = make(fake)
    with caplog.at_level(logging.WARNING):
        async with running(feed) as rec:
            feed.set_demand(frozenset({"AAPL"}))
            await fake.wait_for(lambda: fake.symbols() == {"AAPL"}, what="subscribed without statuses")
            subs = [m for m in fake.received if m.get("action") == "subscribe"]
            assert "statuses" in subs[0] and "statuses" not in subs[-1]
            assert feed.health().up and fake.connects == 1 and rec.errors == {"upstream_error": 1}
    assert "alpaca refused the statuses channel" in caplog.text
