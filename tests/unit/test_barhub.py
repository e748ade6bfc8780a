"""Bar subscriptions in the fan-out: one payload per changed bar shared by every subscriber, delayed releases
by an injected clock, conflation; with the real BarBook, fake connections and a hand-driven scheduler."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
import pytest

from tests.support.clock import ManualClock, ManualScheduler
from ticker.barbook import BarBook
from ticker.barhub import BarHub
from ticker.bars import Bar
from ticker.errors import ProtocolError, TooManyBarSubscriptions
from ticker.frames import ws_text_frame
from ticker.hub import Hub
from ticker.metrics.registry import Metrics
from ticker.quote import Quote
from ticker.server.fanout import SWEEP_INTERVAL, Connection, Fanout

FLUSH = 0.02
SLOW = 1000
T0 = 1_800_000_000_000  # epoch ms, a whole minute


class Conn(Connection):
    transport: ClassVar[str] = "ws"
    framed: ClassVar[list[bytes]] = []

    @staticmethod
    def framer(payload: bytes) -> bytes:
        Conn.framed.append(payload)
        return ws_text_frame(payload)

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames: list[bytes] = []
        self.unsent = 0

    def __repr__(self) -> str:
        return f"<{self.name}>"

    def write_frame(self, frame: bytes) -> int:
        self.frames.append(frame)
        return self.unsent

    def buffered(self) -> int:
        return self.unsent

    def close_slow(self) -> None:
        raise AssertionError("not expected here")

    def close_going_away(self) -> None:
        raise AssertionError("not expected here")

    def abort(self) -> None:
        raise AssertionError("not expected here")

    def send_message(self, kind: str, payload: bytes) -> None:
        raise AssertionError("not expected here")

    def drop_symbols(self, symbols: list[str], refusal: ProtocolError) -> None:
        raise AssertionError("not expected here")

    def messages(self) -> list[dict[str, Any]]:
        return [orjson.loads(f[2:] if f[1] < 126 else f[4:]) for f in self.frames]


class Sse(Conn):
    transport: ClassVar[str] = "sse"

    @staticmethod
    def framer(payload: bytes) -> bytes:
        Conn.framed.append(payload)
        return b"event: x\ndata: " + payload + b"\n\n"


class Rig:
    def __init__(self, delay: float = 60.0) -> None:
        Conn.framed = []
        self.clock = ManualClock()
        self.wall_s = T0 / 1000
        self.sched = ManualScheduler(self.clock)
        self.hub: Hub[Connection] = Hub()
        self.book = BarBook()
        self.bars: BarHub[Connection] = BarHub(3, delay)
        self.metrics = Metrics()
        self.fanout = Fanout(
            self.hub,
            self.metrics,
            FLUSH,
            SLOW,
            10.0,
            clock=self.clock,
            scheduler=self.sched,
            wall=lambda: self.wall_s,
        )
        self.fanout.serve_bars(self.bars, self.book)

    def conn(self, name: str, interval: str = "1m", key: str = "AAPL", kind: type[Conn] = Conn) -> Conn:
        c = kind(name)
        self.hub.add(c)
        symbol = key.lstrip("~")
        self.bars.hold(c, symbol, interval, key, 10)
        wall_ms = int(self.wall_s * 1000)
        self.bars.start(c, symbol, interval, key, self.bars.newest(self.book, symbol, interval, key, wall_ms))
        return c

    def trade(self, price: float, volume: float, at_ms: int, symbol: str = "AAPL") -> None:
        """A quote entering the node as Node._deliver hands it over: the book, then the fan-out."""
        q = Quote(symbol, price, at_ms, volume=volume)
        self.book.on_quote(q)
        self.fanout.publish(q)


def bars_of(c: Conn) -> list[tuple[str, int, float]]:
    return [(m["interval"], m["bar"]["t"], m["bar"]["c"]) for m in c.messages() if m["type"] == "bar"]


def test_one_payload_per_changed_bar_shared_by_every_subscriber_and_transport():
    rig = Rig()
    ws = [rig.conn(f"w{i}") for i in range(3)]
    sse = rig.conn("s", kind=Sse)
    five = rig.conn("five", "5m")
    rig.trade(10.0, 100, T0 + 1000)
    rig.trade(11.0, 150, T0 + 2000)  # the same flush: one bar message with the latest values
    rig.sched.advance()  # a flush is scheduled although nobody subscribes AAPL quotes
    assert [bars_of(c) for c in ws] == [[("1m", T0, 11.0)]] * 3
    assert all(c.frames[0] is ws[0].frames[0] for c in ws)  # the same bytes object
    assert sse.frames[0].endswith(ws[0].frames[0][2:] + b"\n\n")
    assert bars_of(five) == [("5m", T0, 11.0)]
    payloads = Conn.framed
    assert len(payloads) == 3 and payloads[0] is payloads[1]  # encoded once, framed once per transport
    assert orjson.loads(payloads[0])["bar"] == {
        "t": T0,
        "o": 10.0,
        "h": 11.0,
        "l": 10.0,
        "c": 11.0,
        "v": 50.0,
    }
    rig.trade(12.0, 160, T0 + 61_000)  # a new bar opens
    rig.sched.advance(FLUSH)
    assert bars_of(ws[0])[-1] == ("1m", T0 + 60_000, 12.0) and len(ws[0].frames) == 2


def test_nobody_subscribed_costs_no_flush_and_a_quote_subscriber_is_unaffected():
    rig = Rig()
    rig.trade(10.0, 100, T0)
    assert rig.sched.waiting() == []
    q = Conn("q")
    rig.hub.add(q)
    rig.hub.subscribe(q, ["AAPL"])
    rig.trade(11.0, 110, T0 + 1)
    rig.sched.advance()
    assert [m["type"] for m in q.messages()] == ["quotes"]


def test_changes_nobody_receives_do_not_pile_up_nor_reach_a_later_subscriber():
    rig = Rig()
    for minute in range(30):  # an edge's bars, or a provider's, while nobody subscribes bars
        rig.book.apply("AAPL", "1m", Bar(T0 + minute * 60_000, 9.0, 9.5, 8.5, 9.2, 1000), final=False)
        rig.fanout.bars_changed()
    assert rig.book.changed_bars == {} and rig.sched.waiting() == []
    q = Conn("q")  # quote flushes forget the bar changes too
    rig.hub.add(q)
    rig.hub.subscribe(q, ["AAPL"])
    rig.trade(11.0, 110, T0 + 31 * 60_000)
    rig.sched.advance()
    assert rig.book.changed == {} and rig.book.changed_bars == {}
    c = rig.conn("c")
    rig.trade(11.5, 120, T0 + 31 * 60_000 + 1)
    rig.sched.advance(FLUSH)
    assert bars_of(c) == [("1m", T0 + 31 * 60_000, 11.5)]  # the current bar only, not a backlog


def test_provider_bars_and_corrections_are_sent_each_once():
    rig = Rig()
    c = rig.conn("c")
    rig.trade(10.0, 100, T0 + 61_000)
    rig.book.apply("AAPL", "1m", Bar(T0, 9.0, 9.5, 8.5, 9.2, 1000))  # a late provider bar
    rig.fanout.bars_changed()
    rig.sched.advance()
    assert sorted(bars_of(c)) == [("1m", T0, 9.2), ("1m", T0 + 60_000, 10.0)]
    rig.book.apply("AAPL", "1m", Bar(T0 + 60_000, 10.0, 10.0, 10.0, 10.5, 1), final=False)
    rig.fanout.bars_changed()
    rig.sched.advance(FLUSH)
    assert bars_of(c)[-1] == ("1m", T0 + 60_000, 10.5) and len(c.frames) == 3


def test_a_delayed_key_gets_completed_bars_only_as_they_pass_the_horizon():
    rig = Rig(delay=60.0)
    for minute in range(4):  # bars at T0 .. T0+3m; the wall clock is at T0
        rig.trade(10.0 + minute, 100 * (minute + 1), T0 + minute * 60_000 + 5)
    rig.wall_s = (T0 + 120_000) / 1000  # the horizon: T0 + 1m: only the T0 bar has ended by it
    d = rig.conn("d", key="~AAPL")
    assert rig.bars.history(rig.book, "AAPL", "1m", "~AAPL", 10, T0 + 120_000) == [
        rig.book.bar_at("AAPL", "1m", T0)
    ]
    rig.trade(20.0, 1000, T0 + 3 * 60_000 + 9)  # moves the current bar: nothing for a delayed key
    rig.sched.advance()
    assert d.frames == []
    rig.fanout.release_bars()
    rig.sched.advance()
    assert d.frames == []  # nothing new passed the horizon
    rig.wall_s += 60.0  # horizon T0 + 2m: the T0+1m bar has ended by it
    rig.fanout.release_bars()
    rig.sched.advance(FLUSH)
    assert bars_of(d) == [("1m", T0 + 60_000, 11.0)]
    rig.wall_s += 120.0  # two more (a stalled timer): both, oldest first, never the open one
    rig.fanout.release_bars()
    rig.sched.advance(FLUSH)
    assert bars_of(d) == [("1m", T0 + 60_000, 11.0), ("1m", T0 + 120_000, 12.0), ("1m", T0 + 180_000, 20.0)]
    horizon = int(rig.wall_s * 1000) - 60_000
    assert all(t + 60_000 <= horizon for _, t, _ in bars_of(d))
    rig.book.apply(
        "AAPL", "1m", Bar(T0 + 60_000, 11.0, 11.0, 11.0, 11.1, 5)
    )  # a correction of a released bar
    rig.fanout.bars_changed()
    rig.sched.advance(FLUSH)
    assert bars_of(d)[-1] == ("1m", T0 + 60_000, 11.1)


def test_a_conflated_connection_skips_bar_frames_and_catches_up_on_resume():
    rig = Rig()
    slow, fast = rig.conn("slow"), rig.conn("fast")
    slow.unsent = SLOW + 1
    rig.trade(10.0, 100, T0 + 1)
    rig.sched.advance()
    assert len(slow.frames) == 1 and rig.fanout.is_conflating(slow)
    rig.trade(11.0, 110, T0 + 2)
    rig.sched.advance(FLUSH)
    rig.trade(12.0, 120, T0 + 60_001)
    rig.sched.advance(FLUSH)
    assert len(slow.frames) == 1 and len(fast.frames) == 3
    slow.unsent = 0
    rig.sched.advance(SWEEP_INTERVAL)
    assert not rig.fanout.is_conflating(slow)
    assert bars_of(slow) == [("1m", T0, 10.0), ("1m", T0, 11.0), ("1m", T0 + 60_000, 12.0)]


def test_cap_demand_and_removal():
    told: list[frozenset[str]] = []
    hub: BarHub[str] = BarHub(2, on_demand=told.append)
    hub.hold("a", "AAPL", "1m", "AAPL", 5)
    hub.hold("a", "AAPL", "5m", "AAPL", 5)
    hub.hold("b", "AAPL", "1m", "~AAPL", 5)
    with pytest.raises(TooManyBarSubscriptions):
        hub.hold("a", "MSFT", "1m", "MSFT", 5)
    assert told == [frozenset({"AAPL"})]  # once: the symbol was wanted already
    assert hub.start("a", "AAPL", "1m", "AAPL") and hub.start("b", "AAPL", "1m", "~AAPL", 7)
    assert hub.realtime == {"AAPL": {"1m": None}} and hub.has_delayed
    hub.remove("a")
    hub.remove("b")
    assert hub.members == {} and hub.realtime == {} and not hub.has_delayed and hub.demand() == frozenset()
    assert told[-1] == frozenset()


def test_reopen_builds_one_bars_per_key_interval_and_history_for_live_subscribers_that_asked_for_history():
    hub: BarHub[str] = BarHub(5, delay=60.0)
    book = BarBook()
    for minute in range(5):
        book.on_quote(Quote("AAPL", 10.0 + minute, T0 + minute * 60_000 + 5, volume=100 * (minute + 1)))
    book.on_quote(Quote("MSFT", 50.0, T0 + 5, volume=100))
    wall = T0 + 5 * 60_000  # a delayed key's horizon: T0 + 4m
    for sub, symbol, interval, key, n in (
        ("a", "AAPL", "1m", "AAPL", 3),
        ("b", "AAPL", "1m", "AAPL", 3),
        ("c", "AAPL", "1m", "AAPL", 10),
        ("d", "AAPL", "1m", "~AAPL", 10),
        ("e", "AAPL", "5m", "AAPL", 10),
        ("z", "AAPL", "1m", "AAPL", 0),  # asked for no history: nothing new to tell it
        ("m", "MSFT", "1m", "MSFT", 10),  # another symbol
    ):
        hub.hold(sub, symbol, interval, key, n)
        hub.start(sub, symbol, interval, key, hub.opening(book, symbol, interval, key, n, wall)[1])
    hub.hold("w", "AAPL", "1m", "AAPL", 10)  # held, not live yet: its own first bars is on its way
    got: dict[tuple[str, bool, int], list[str]] = {}
    for payload, subs in hub.reopen(book, "AAPL", wall):
        msg = orjson.loads(payload)
        assert msg["type"] == "bars" and msg["s"] == "AAPL"
        got[msg["interval"], msg["delayed"], len(msg["data"])] = sorted(subs)
        key = "~AAPL" if msg["delayed"] else "AAPL"
        assert (
            payload
            == hub.opening(
                book, "AAPL", msg["interval"], key, hub.holds(subs[0])["AAPL", msg["interval"]].history, wall
            )[0]
        )
    assert got == {
        ("1m", False, 3): ["a", "b"],
        ("1m", False, 5): ["c"],
        ("1m", True, 4): ["d"],  # only the bars that ended by the horizon
        ("5m", False, 1): ["e"],
    }
    assert hub.reopen(book, "NVDA", wall) == []
