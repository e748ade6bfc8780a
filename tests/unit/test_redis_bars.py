"""Bars through Redis without Redis: the layout, the codec, the edge's handling of bar messages and the
publisher's writes (against a recording fake client; the Lua script itself runs in tests/e2e/test_redis_bars.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from redis.exceptions import ResponseError, TryAgainError

from tests.support.timing import eventually
from ticker.bars import HISTORY, INTERVALS, Bar
from ticker.broker import redis_bars as rb
from ticker.broker import redis_layout as rc
from ticker.broker.publisher_bars import PublisherBars
from ticker.broker.redis_cluster import ClusterClient
from ticker.broker.redis_edge import RedisBroker
from ticker.metrics.registry import Metrics
from ticker.quote import Quote

T0 = 1_717_200_000_000  # a whole day (UTC midnight), so every interval's bars start here


def test_layout_names():
    lay = rc.Layout("tk")
    assert lay.bar_channel("BRK.B") == b"tk:b:BRK.B"
    assert lay.bar_channel("BRK.B").startswith(lay.bar_channel_prefix)
    assert not lay.channel("BRK.B").startswith(lay.bar_channel_prefix)  # quotes and bars never mix
    assert lay.bars("BRK.B", "1m") == "tk:bars:BRK.B:1m"
    assert lay.bars_ready("BRK.B") == "tk:bars:BRK.B"
    names = {lay.bars(s, i) for s in ("A", "A:1", "B") for i in INTERVALS} | {
        lay.bars_ready(s) for s in ("A", "B")
    }
    assert len(names) == 3 * len(INTERVALS) + 2  # no two (symbol, interval) pairs share a key


def test_an_update_round_trips_with_its_symbol_intervals_and_ready_flag():
    bars = {
        "1m": [Bar(T0, 1.5, 2.0, 1.25, 1.75, 300), Bar(T0 + 60_000, 1.75, 1.75, 1.5, 1.5, 0)],
        "1d": [Bar(T0, 1, 2, 1, 2, 9)],
    }
    raw = rb.encode_update("AAPL", bars, 1717171717171.1234)
    msg = orjson.loads(raw)  # plain JSON: the bars in their wire form
    assert msg == {
        "pt": 1717171717171.123,
        "s": "AAPL",
        "b": {"1m": [b.to_json() for b in bars["1m"]], "1d": [bars["1d"][0].to_json()]},
    }
    got = rb.decode_update(raw)
    assert (got.symbol, got.pt, got.ready, got.bars) == ("AAPL", 1717171717171.123, False, bars)
    again = rb.decode_update(rb.encode_update("AAPL", {}, 5.0, ready=True))
    assert again.ready and again.bars == {}


BAR = {"t": T0, "o": 1, "h": 2, "l": 1, "c": 2, "v": 3}


@pytest.mark.parametrize(
    "msg",
    [
        b"not json",
        b"[]",
        {"s": "AAPL", "b": {}},  # no pt
        {"pt": True, "s": "AAPL", "b": {}},
        {"pt": 1, "s": "aapl!", "b": {}},
        {"pt": 1, "s": "AAPL", "b": []},
        {"pt": 1, "s": "AAPL", "b": {"2m": [BAR]}},
        {"pt": 1, "s": "AAPL", "b": {"1m": BAR}},
        {"pt": 1, "s": "AAPL", "b": {"1m": [BAR]}, "r": 1},
        {"pt": 1, "s": "AAPL", "b": {"1m": [{**BAR, "t": True}]}},
        {"pt": 1, "s": "AAPL", "b": {"1m": [{**BAR, "t": 1.5}]}},
        {"pt": 1, "s": "AAPL", "b": {"1m": [{**BAR, "t": -60_000}]}},
        {"pt": 1, "s": "AAPL", "b": {"1m": [{**BAR, "o": "1"}]}},
        {"pt": 1, "s": "AAPL", "b": {"1m": [{**BAR, "c": None}]}},
        {"pt": 1, "s": "AAPL", "b": {"1m": [{**BAR, "v": -1}]}},
        {"pt": 1, "s": "AAPL", "b": {"1m": [{**BAR, "l": 3}]}},  # low above high
        {"pt": 1, "s": "AAPL", "b": {"1m": [[T0, 1, 2, 1, 2, 3]]}},
    ],
)
def test_a_malformed_update_is_refused_whole(msg: Any):
    raw = msg if isinstance(msg, bytes) else orjson.dumps(msg)
    with pytest.raises(ValueError, match="malformed"):
        rb.decode_update(raw)


def test_a_stored_history_skips_and_counts_malformed_members():
    good = Bar(T0, 1, 2, 1, 2, 3)
    bars, bad = rb.decode_history(
        [good.encode(), b"{", orjson.dumps({**BAR, "h": "x"}), b"[1]", good.encode().decode()]
    )
    assert bars == [good, good] and bad == 3


def test_write_args_hold_the_bound_the_ttl_the_mode_and_each_bar_by_its_start():
    a, b = Bar(T0, 1, 2, 1, 2, 3), Bar(T0 + 60_000, 2, 2, 2, 2, 0)
    assert rb.write_args([a, b], 2880, replace=False) == [
        2880,
        rb.BARS_TTL,
        0,
        T0,
        a.encode(),
        T0 + 60_000,
        b.encode(),
    ]
    assert rb.write_args([], 366, replace=True, ttl=10) == [366, 10, 1]


# -- the edge ----------------------------------------------------------------------------------------
def edge() -> tuple[RedisBroker, list[tuple[str, str, Bar]]]:
    broker = RedisBroker("redis://127.0.0.1:1/0", Metrics(), lambda s: None, prefix="tk")
    got: list[tuple[str, str, Bar]] = []
    broker.bar_sink = lambda s, i, b: got.append((s, i, b))
    broker._subscribed = {"AAPL"}
    return broker, got


def test_the_edge_brings_bars_ready_made():
    assert RedisBroker.aggregates_bars is False


def test_the_edge_hands_each_bar_of_an_update_to_the_sink():
    broker, got = edge()
    a, b = Bar(T0, 1, 2, 1, 2, 3), Bar(T0, 1, 3, 1, 3, 4)
    broker._on_bars(b"tk:b:AAPL", rb.encode_update("AAPL", {"1s": [a], "1d": [b]}, 1.0))
    assert got == [("AAPL", "1s", a), ("AAPL", "1d", b)]


def test_the_edge_counts_malformed_or_misrouted_updates_and_goes_on(caplog: pytest.LogCaptureFixture):
    broker, got = edge()
    errors = broker.metrics.broker_errors
    broker._on_bars(b"tk:b:AAPL", b'{"pt":1,"s":"AAPL","b":{"1m":[{"t":"x"}]}}')
    broker._on_bars(b"tk:b:AAPL", b"\xff")
    broker._on_bars(
        b"tk:b:AAPL", rb.encode_update("MSFT", {"1m": [Bar(T0, 1, 1, 1, 1)]}, 1.0)
    )  # not its channel
    assert errors._value.get() == 3 and got == []
    assert (
        sum("dropped a bar message" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
        == 1
    )
    broker._on_bars(b"tk:b:AAPL", rb.encode_update("AAPL", {"1m": [Bar(T0, 1, 1, 1, 1)]}, 1.0))
    assert len(got) == 1  # still delivering


async def test_a_rewritten_history_puts_the_symbol_behind_from_its_last_update():
    broker, got = edge()
    bar = Bar(T0, 1, 1, 1, 1)
    broker._on_bars(b"tk:b:AAPL", rb.encode_update("AAPL", {"1m": [bar]}, 1000.0, ready=True))
    assert broker._bars_behind == {}  # the first history: the node loads it (load_bars)
    broker._on_bars(b"tk:b:AAPL", rb.encode_update("AAPL", {"1m": [bar]}, 2000.0))
    broker._on_bars(b"tk:b:AAPL", rb.encode_update("AAPL", {"1m": [bar]}, 9000.0, ready=True))
    assert broker._bars_behind == {"AAPL": 2000.0}  # what it missed since its last update before the rewrite
    assert len(got) == 3


async def test_a_history_the_publisher_never_writes_leaves_no_waiter_behind(monkeypatch: pytest.MonkeyPatch):
    broker, _ = edge()
    broker._client, broker._up = object(), True  # type: ignore[assignment]

    async def never_ready(*args: Any) -> tuple[bool, list[bytes]]:
        return False, []

    monkeypatch.setattr(rb, "read_history", never_ready)
    monkeypatch.setattr(rb, "LOAD_WAIT", 0.05)
    got = await asyncio.gather(*(broker.load_bars(s, "1m", T0, T0 + 1) for s in ("AAPL", "AAPL", "NOPE")))
    assert got == [[], [], []]  # what Redis has once the wait ran out
    assert broker._bars_ready == {} and broker._bars_waiters == {}
    monkeypatch.setattr(rb, "LOAD_WAIT", 60.0)
    task = asyncio.ensure_future(broker.load_bars("ZZZ", "1m", T0, T0 + 1))
    await eventually(lambda: "ZZZ" in broker._bars_ready, what="the load to wait for the publisher")
    task.cancel()  # a reader that gives up (the node stopping)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert broker._bars_ready == {} and broker._bars_waiters == {}


# -- the publisher ---------------------------------------------------------------------------------
class FakeRedis:
    """Records every command; pipelines run as one round trip. ``fail``: the next execute raises."""

    def __init__(self) -> None:
        self.trips: list[list[tuple[Any, ...]]] = []
        self.marks: dict[str, bytes] = {}
        self.stored: dict[str, list[bytes]] = {}
        self.fail = False

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)

    async def script_load(self, script: str) -> str:
        return rb.WRITE_SERIES_SHA

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        return [self.marks.get(k) for k in keys]


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.cmds: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kw: self.cmds.append((name, *args))

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if self.redis.fail:
            self.redis.fail = False
            raise ConnectionError("lost")
        self.redis.trips.append(self.cmds)
        out: list[Any] = []
        for cmd in self.cmds:
            if cmd[0] == "set":
                self.redis.marks[cmd[1]] = cmd[2]
            out.append(self.redis.stored.get(cmd[1], []) if cmd[0] == "zrange" else 1)
        return out


def writes(trip: list[tuple[Any, ...]]) -> dict[str, tuple[bool, list[Bar]]]:
    """key → (replace, bars) of a trip's series writes."""
    out = {}
    for cmd in trip:
        if cmd[0] == "evalsha":
            _, sha, nkeys, key, maxlen, ttl, replace, *pairs = cmd
            assert sha == rb.WRITE_SERIES_SHA and nkeys == 1 and ttl == rb.BARS_TTL
            assert maxlen == HISTORY[key.rsplit(":", 1)[1]]
            out[key] = (replace == 1, [Bar(**orjson.loads(m)) for m in pairs[1::2]])
    return out


def published(trip: list[tuple[Any, ...]]) -> dict[bytes, rb.BarUpdate]:
    return {cmd[1]: rb.decode_update(cmd[2]) for cmd in trip if cmd[0] == "publish"}


def quote(price: float, ts: int, volume: float) -> Quote:
    return Quote("AAPL", price, ts, volume=volume)


async def started(
    history: dict[str, list[Bar]] | None = None, redis: FakeRedis | None = None
) -> tuple[PublisherBars, FakeRedis]:
    calls: list[tuple[str, str, int, int]] = []

    async def load(symbol: str, interval: str, start: int, end: int) -> list[Bar] | None:
        calls.append((symbol, interval, start, end))
        return None if history is None else history.get(interval)

    clock = [T0 / 1000 + 90.0]
    bars = PublisherBars(
        rc.Layout("tk"), load, lambda s: lambda t: t - t % 86_400_000, "pub1", clock=lambda: clock[0]
    )
    redis = redis or FakeRedis()
    await bars.attach(redis)  # type: ignore[arg-type]
    bars.carry({"AAPL"}, ())
    await asyncio.wait_for(bars._loading["AAPL"], 5)
    return bars, redis


async def test_a_symbol_is_written_whole_once_backfilled_then_only_its_changed_bars():
    history = {"1m": [Bar(T0, 10, 11, 9, 10.5, 100), Bar(T0 + 60_000, 10.5, 12, 10, 11, 50)], "1d": None}
    bars, redis = await started(history)  # type: ignore[arg-type]
    bars.on_quote(quote(11.5, T0 + 90_000, 1000))  # the first quote: a trade of size 0 (no volume before)
    bars._collect()
    await bars._write(redis)  # type: ignore[arg-type]
    trip = redis.trips[-1]
    w = writes(trip)
    assert set(w) == {f"tk:bars:AAPL:{i}" for i in INTERVALS} and all(r for r, _ in w.values())
    assert [b.t for b in w["tk:bars:AAPL:1m"][1]] == [
        T0,
        T0 + 60_000,
    ]  # the provider's word on the current bar
    # made of the 1m history, and the (unfinished) current bar moved by the trade
    assert w["tk:bars:AAPL:5m"][1] == [Bar(T0, 10, 12, 9, 11.5, 150)]
    assert w["tk:bars:AAPL:1s"][1] == [Bar(T0 + 90_000, 11.5, 11.5, 11.5, 11.5, 0)]
    assert w["tk:bars:AAPL:1d"][1] == [Bar(T0, 10, 12, 9, 11.5, 150)]  # no 1d history: made of 1m
    assert redis.marks == {"tk:bars:AAPL": "pub1"}
    msg = published(trip)[b"tk:b:AAPL"]
    assert msg.ready and {i: [b.t for b in bs] for i, bs in msg.bars.items()} == {
        "1s": [T0 + 90_000],
        "1m": [T0 + 60_000],
        "5m": [T0],
        "1h": [T0],
        "1d": [T0],
    }  # the current bar of each interval, not the whole history

    bars.on_quote(quote(12.5, T0 + 91_000, 1200))  # a trade of 200
    bars.on_bar("AAPL", "1m", Bar(T0, 10, 11.5, 9, 10.25, 110), True)  # a provider's correction of a past bar
    bars._collect()
    await bars._write(redis)  # type: ignore[arg-type]
    assert (
        len(redis.trips) == 3
    )  # the stored history read, the whole write, then one round trip for all changes
    w = writes(redis.trips[-1])
    assert not any(r for r, _ in w.values())
    assert w["tk:bars:AAPL:1s"][1] == [  # the bar that closed since the last write, and the new one
        Bar(T0 + 90_000, 11.5, 11.5, 11.5, 11.5, 0),
        Bar(T0 + 91_000, 12.5, 12.5, 12.5, 12.5, 200),
    ]
    assert w["tk:bars:AAPL:1m"][1] == [
        Bar(T0, 10, 11.5, 9, 10.25, 110),
        Bar(T0 + 60_000, 10.5, 12.5, 10, 12.5, 250),
    ]
    assert published(redis.trips[-1])[b"tk:b:AAPL"].bars["1m"] == w["tk:bars:AAPL:1m"][1]
    bars._collect()
    await bars._write(redis)  # type: ignore[arg-type]
    assert len(redis.trips) == 3  # nothing changed: no round trip


async def test_changes_made_while_redis_is_away_are_written_and_a_lost_history_whole():
    bars, redis = await started()
    bars._collect()
    await bars._write(redis)  # type: ignore[arg-type]
    bars.on_quote(quote(10, T0 + 1_000, 10))
    bars.on_quote(quote(11, T0 + 2_000, 20))  # the 1s bar of T0+1000 completes while Redis is away
    bars._collect()
    redis.fail = True
    with pytest.raises(ConnectionError):
        await bars._write(redis)  # type: ignore[arg-type]
    bars.detach()
    bars.on_quote(quote(12, T0 + 3_000, 30))
    bars._collect()  # taken from the book while detached too
    await bars.attach(redis)  # type: ignore[arg-type]  # Redis kept the mark: only the missed bars
    await bars._write(redis)  # type: ignore[arg-type]
    w = writes(redis.trips[-1])
    assert [b.t for b in w["tk:bars:AAPL:1s"][1]] == [T0 + 1_000, T0 + 2_000, T0 + 3_000]
    assert not w["tk:bars:AAPL:1s"][0]
    redis.marks.clear()  # Redis restarted empty: the next session rewrites the whole history
    await bars.attach(redis)  # type: ignore[arg-type]
    await bars._write(redis)  # type: ignore[arg-type]
    w = writes(redis.trips[-1])
    assert w["tk:bars:AAPL:1s"] == (
        True,
        [Bar(T0 + s * 1000, p, p, p, p, v) for s, p, v in ((1, 10, 0), (2, 11, 10), (3, 12, 10))],
    )
    assert published(redis.trips[-1])[b"tk:b:AAPL"].ready


async def test_a_restarted_publisher_starts_from_the_history_in_redis_and_a_dropped_symbol_is_forgotten():
    redis = FakeRedis()
    old = Bar(T0, 5, 6, 4, 5.5, 7)
    redis.stored["tk:bars:AAPL:1h"] = [old.encode(), b"junk"]
    bars, _ = await started(redis=redis)
    assert bars.book.range("AAPL", "1h") == [old]
    bars.carry((), {"AAPL"})
    assert "AAPL" not in bars.book and not bars._ready
    bars.on_quote(quote(10, T0 + 1_000, 10))  # a late quote of a symbol no longer carried is not written
    bars.book.forget("AAPL")
    bars._collect()
    n = len(redis.trips)
    await bars._write(redis)  # type: ignore[arg-type]
    assert len(redis.trips) == n


class _Shards:
    """A cluster client whose ``per_master`` answers bar reads from ``stored`` (key → members), except those
    of the symbols whose master is ``lost`` and the keys that answer an error in ``wrong``."""

    def __init__(self, layout: rc.Layout, lost: set[str], stored: dict[str, list[bytes]]) -> None:
        self.owner = {layout.bars(s, i): s for s in ("AAPL", "AMZN") for i in INTERVALS}
        self.lost, self.stored = lost, stored
        self.wrong: dict[str, BaseException] = {}

    async def per_master(self, calls: list[tuple[int, tuple[Any, ...]]]) -> list[Any]:
        return [
            ConnectionError("refused")
            if self.owner[args[1]] in self.lost
            else self.wrong.get(args[1]) or self.stored.get(args[1], [])
            for _slot, args in calls
        ]


def _cluster_edge() -> tuple[RedisBroker, list[tuple[str, str, Bar]], rc.Layout]:
    broker, got = edge()
    broker.layout = layout = rc.Layout("tk", cluster=True)
    broker._subscribed = {"AAPL", "AMZN"}
    return broker, got, layout


async def test_a_lost_master_keeps_only_its_symbols_behind_for_the_next_pass():
    broker, got, layout = _cluster_edge()
    a = Bar(T0, 1, 2, 1, 2, 3)
    shards = _Shards(layout, {"AMZN"}, {layout.bars("AAPL", "1m"): [a.encode()]})
    broker._bars_behind = {"AAPL": float(T0), "AMZN": float(T0)}
    await broker._catch_up(shards)  # type: ignore[arg-type]
    assert got == [("AAPL", "1m", a)]  # AAPL's master answered
    assert broker._bars_behind == {"AMZN": float(T0)}  # read again on the next pass, from where it was
    shards.lost = {"AAPL", "AMZN"}
    broker._bars_behind["AAPL"] = float(T0 + 5_000)
    await broker._catch_up(shards)  # type: ignore[arg-type]  # every one lost: the session goes on
    assert broker._bars_behind == {"AAPL": float(T0 + 5_000), "AMZN": float(T0)}
    shards.lost = set()
    await broker._catch_up(shards)  # type: ignore[arg-type]
    assert broker._bars_behind == {} and len(got) == 2


async def test_a_plain_error_answer_is_counted_a_moving_slot_read_again():
    broker, got, layout = _cluster_edge()
    a = Bar(T0, 1, 2, 1, 2, 3)
    shards = _Shards(layout, set(), {layout.bars("AAPL", "1m"): [a.encode()]})
    shards.wrong[layout.bars("AAPL", "1h")] = ResponseError(
        "WRONGTYPE"
    )  # comes again: counted, not read again
    shards.wrong[layout.bars("AMZN", "1m")] = TryAgainError("TRYAGAIN")  # a slot moving: read again
    broker._bars_behind = {"AAPL": float(T0), "AMZN": float(T0)}
    await broker._catch_up(shards)  # type: ignore[arg-type]
    assert got == [("AAPL", "1m", a)]  # its other intervals are handed on
    assert broker.metrics.broker_errors._value.get() == 1
    assert broker._bars_behind == {"AMZN": float(T0)}


async def test_redis_lost_during_a_catch_up_keeps_every_symbol_behind_from_the_earlier_time(
    monkeypatch: pytest.MonkeyPatch,
):
    broker, got = edge()
    broker._subscribed = {"AAPL", "AMZN"}
    redis = FakeRedis()
    redis.fail = True
    broker._bars_behind = {"AAPL": float(T0), "AMZN": float(T0)}

    async def noted_meanwhile(*args: Any) -> Any:  # an update noted during the read, at a later time
        broker._bars_behind["AAPL"] = float(T0 + 9_000)
        raise ConnectionError("lost")

    with pytest.raises(ConnectionError):
        await broker._catch_up(redis)  # type: ignore[arg-type]
    assert broker._bars_behind == {"AAPL": float(T0), "AMZN": float(T0)}
    monkeypatch.setattr(rc, "run_keyed", noted_meanwhile)
    with pytest.raises(ConnectionError):
        await broker._catch_up(redis)  # type: ignore[arg-type]
    assert broker._bars_behind == {"AAPL": float(T0), "AMZN": float(T0)} and got == []


async def test_channels_moved_make_the_command_client_learn_the_slot_map_again():
    client = rc.connect("redis+cluster://127.0.0.1:1", "t")
    assert isinstance(client, ClusterClient)
    client._initialize = False
    broker, _ = edge()
    broker._client = client

    class Moved:
        async def listen(self) -> Any:
            yield {"type": rc.RESUBSCRIBED, "data": [b"tk:q:{0}:AAPL"]}

    await broker._read(Moved())
    assert client._initialize and broker._full
    broker._client = None
    await broker._read(Moved())  # no session: nothing to do
