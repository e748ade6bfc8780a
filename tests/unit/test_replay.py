"""The recording format, the replay feed and the recorder: order, scaled timing, loop, bad input, round trip."""

from __future__ import annotations

import asyncio
import gzip
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from feeds.base import FeedContext
from feeds.options import FeedOptions
from feeds.recording import recorder as recorder_mod
from feeds.recording.format import RecordingError, decode, encode, header, scan, write_all
from feeds.recording.recorder import Recorder
from feeds.recording.replay import ReplayFeed, sample_recording
from feeds.registry import create_feeds
from feeds.simulated import SimulatedFeed
from tests.support.fakes.sink import FeedSink
from tests.support.timing import eventually
from ticker.cli.record import RecordConfig, run_record
from ticker.directory import SymbolInfo
from ticker.quote import Quote, encode_entry

T0 = 1_763_000_000_000


def q(sym: str, price: float, t: int = T0, **kw: Any) -> Quote:
    return Quote(symbol=sym, price=price, ts_ms=t, **kw)


def wire(quote: Quote) -> dict:
    return orjson.loads(encode_entry(quote, 0))


class TimedSink(FeedSink):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        inner = self.ctx.emit

        def emit(quote: Quote) -> None:
            self.times.append(time.monotonic())
            inner(quote)

        self.ctx.emit = emit


def test_line_round_trip_keeps_every_field() -> None:
    quote = q("BRK.B", 462.8, bid=462.79, ask=462.81, volume=1200.0, prev_close=460.0)
    r, back = decode(encode(quote, T0 + 5))
    assert r == T0 + 5
    assert wire(back) == wire(quote)
    assert back.prev_close == 460.0 and back.change == pytest.approx(2.8)
    with pytest.raises(ValueError):
        decode(b'{"s": "AAPL", "p": "1.0", "t": 1}')
    with pytest.raises(ValueError):
        decode(b"[1, 2]")


async def test_replay_in_order_with_timing_scaled(tmp_path: Path) -> None:
    path = tmp_path / "five.jsonl"
    records = [(T0 + i * 200, q(sym, 10.0 + i)) for i, sym in enumerate(["A", "B", "A", "C", "B"])]
    write_all(path, ["test"], records)
    feed = ReplayFeed(path, speed=2.0)
    sink = TimedSink()
    before = int(time.time() * 1000)
    await feed.start(sink.ctx)
    try:
        await asyncio.wait_for(feed.finished.wait(), 10)
    finally:
        await feed.stop()
    assert [(x.symbol, x.price) for x in sink.quotes] == [(x.symbol, x.price) for _, x in records]
    # 200 ms recorded / speed 2 = 100 ms apart: quote k is due k x 100 ms after the first (never early)
    offsets = [t - sink.times[0] for t in sink.times]
    assert all(off >= k * 0.1 - 0.005 for k, off in enumerate(offsets)), offsets
    assert all(x.ts_ms >= before for x in sink.quotes)  # timestamps rewritten to now
    assert feed.known_symbols() == ["A", "B", "C"]
    assert feed.health().last_data is not None


async def test_fast_replay_keeps_timestamps_and_gzip(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl.gz"
    records = [(T0 + i * 10_000, q("X", float(i), t=T0 + i)) for i in range(500)]  # 5000 s of recording
    write_all(path, ["test"], records)
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # gzip magic
    feed = ReplayFeed(path, speed=0, keep_timestamps=True)
    sink = FeedSink()
    await feed.start(sink.ctx)
    try:
        await asyncio.wait_for(feed.finished.wait(), 10)
    finally:
        await feed.stop()
    assert [x.price for x in sink.quotes] == [float(i) for i in range(500)]
    assert [x.ts_ms for x in sink.quotes] == [T0 + i for i in range(500)]


async def test_loop_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "three.jsonl"
    write_all(path, ["test"], [(T0 + i * 100, q("L", float(i))) for i in range(3)])
    feed = ReplayFeed(path, speed=50.0, loop=True)
    sink = FeedSink()
    await feed.start(sink.ctx)
    try:
        await eventually(lambda: len(sink.quotes) >= 8, within=10)
        assert not feed.finished.is_set()
    finally:
        await feed.stop()
    assert [x.price for x in sink.quotes[:8]] == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0, 1.0]
    assert feed.laps >= 2


async def test_malformed_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [
        header(["test"]),
        encode(q("A", 1.0), T0),
        b"{not json\n",
        b'{"s": "A"}\n',
        b"\n",
        b"x" * 70_000 + b"\n",
        encode(q("B", 2.0), T0 + 1),
    ]
    path.write_bytes(b"".join(lines))
    feed = ReplayFeed(path, speed=0)
    sink = FeedSink()
    await feed.start(sink.ctx)
    try:
        await asyncio.wait_for(feed.finished.wait(), 10)
    finally:
        await feed.stop()
    assert [x.symbol for x in sink.quotes] == ["A", "B"]
    assert sink.errors == {"malformed": 3}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"format": "other", "version": 1}\n', "not a ticker recording"),
        (b'{"format": "ticker-quotes", "version": 9}\n', "unsupported recording version 9"),
        (b"garbage\n", "not a ticker recording"),
        (b'{"format": "ticker-quotes", "version": 1}\n', "holds no quotes"),
    ],
)
async def test_bad_files_give_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=message):
        await ReplayFeed(path).start(FeedSink().ctx)


async def test_missing_file_and_bad_speed() -> None:
    with pytest.raises(RecordingError, match="cannot open recording"):
        await ReplayFeed("/nonexistent/x.jsonl").start(FeedSink().ctx)
    with pytest.raises(ValueError, match="replay-speed"):
        ReplayFeed(None, speed=-1)


def test_sample_recording_is_shipped_and_default() -> None:
    path = sample_recording()
    summary = scan(path)
    assert len(summary.symbols) >= 30 and summary.malformed == 0
    assert summary.first_ms is not None and summary.last_ms is not None
    assert summary.last_ms - summary.first_ms >= 120_000  # a few minutes of ticks
    (feed,) = create_feeds(["replay"], FeedOptions())
    assert isinstance(feed, ReplayFeed) and feed.path == path


async def test_record_then_replay_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl.gz"
    sim = SimulatedFeed(symbols=["AAPL", "MSFT", "SPY"], rate=20.0, seed=7)
    rec = Recorder(path, ["simulated"], ["AAPL", "MSFT", "SPY"])
    await rec.open()
    live = FeedSink()
    collect = live.ctx.emit

    def emit(quote: Quote) -> None:  # what ticker record does (emit=rec.record), seen from the test too
        rec.record(quote)
        collect(quote)

    await sim.start(FeedContext(emit=emit))
    await eventually(lambda: len(live.quotes) >= 60, within=10)
    await sim.stop()
    await rec.close()
    assert rec.written == len(live.quotes) and rec.dropped == 0

    feed = ReplayFeed(path, speed=0, keep_timestamps=True)
    replayed = FeedSink()
    await feed.start(replayed.ctx)
    await asyncio.wait_for(feed.finished.wait(), 10)
    await feed.stop()
    assert [wire(x) for x in replayed.quotes] == [wire(x) for x in live.quotes]
    assert [x.prev_close for x in replayed.quotes] == [x.prev_close for x in live.quotes]


async def test_run_record_writes_a_replayable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.jsonl"
    options = FeedOptions(symbols=["AAPL", "NVDA"], sim_rate=20.0, seed=1)
    config = RecordConfig(out=str(out), duration=1.0, feeds=["simulated"], feed_options=options)
    assert await run_record(config) == 0
    summary = scan(out)
    assert summary.header["feeds"] == ["simulated"] and summary.header["symbols"] == ["AAPL", "NVDA"]
    assert set(summary.symbols) == {"AAPL", "NVDA"} and summary.count >= 20
    assert f"{summary.count} quotes of 2 symbols" in capsys.readouterr().err


async def test_run_record_reports_bad_feed_and_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = RecordConfig(out=str(tmp_path / "x.jsonl"), duration=1.0, feeds=["nope"])
    assert await run_record(config) == 2
    assert "unknown feed 'nope'" in capsys.readouterr().err
    config = RecordConfig(out=str(tmp_path / "no" / "x.jsonl"), duration=1.0)
    assert await run_record(config) == 2
    assert "cannot write" in capsys.readouterr().err


async def test_recorder_bounds_pending_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder_mod, "MAX_PENDING", 5)
    rec = Recorder(tmp_path / "b.jsonl", ["test"])
    await rec.open()
    for i in range(8):
        rec.record(q("A", float(i)))
    await rec.close()
    assert rec.written == 5 and rec.dropped == 3
    assert scan(tmp_path / "b.jsonl").count == 5


def test_gzip_is_detected_by_content(tmp_path: Path) -> None:
    path = tmp_path / "no-suffix"
    with gzip.open(path, "wb") as fh:
        fh.write(header(["t"]) + encode(q("Z", 1.5), T0))
    assert scan(path).symbols == ["Z"]


async def test_replay_directory_is_the_recorded_symbols(tmp_path: Path) -> None:
    path = tmp_path / "two.jsonl"
    write_all(path, ["test"], [(T0, q("BRK.B", 1.0)), (T0 + 1, q("ETH-USD", 2.0)), (T0 + 2, q("BRK.B", 3.0))])
    feed = ReplayFeed(path, speed=0, loop=True)
    assert await feed.load_reference() is None  # not scanned yet: cannot tell
    sink = FeedSink()
    await feed.start(sink.ctx)
    try:
        entries = await feed.load_reference()
    finally:
        await feed.stop()
    assert entries == [
        SymbolInfo("BRK.B", "BRK.B", "REPLAY", "other", "USD"),
        SymbolInfo("ETH-USD", "ETH-USD", "REPLAY", "other", "USD"),
    ]


async def test_a_replay_that_ends_reports_down_and_a_looping_one_stays_up(tmp_path: Path) -> None:
    path = tmp_path / "short.jsonl"
    write_all(path, ["test"], [(T0 + i, q("E", float(i))) for i in range(3)])
    once, looping = ReplayFeed(path, speed=0), ReplayFeed(path, speed=50.0, loop=True)
    sinks = FeedSink(), FeedSink()
    await once.start(sinks[0].ctx)
    await looping.start(sinks[1].ctx)
    try:
        await asyncio.wait_for(once.finished.wait(), 10)
        assert not once.health().up and once.health().reason == "the recording ended"
        await eventually(lambda: looping.laps >= 2, within=10)
        assert looping.health().up and not looping.finished.is_set()
    finally:
        await once.stop()
        await looping.stop()
    assert len(sinks[0].quotes) == 3
