"""The Python client against real servers (processes where restarts and signals are the point, else one in the
test's event loop): resume across restarts, subscriptions, errors, liveness."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.clientkit import take
from tests.support.inprocess import InProcessServer, serve_in_process
from tests.support.serverproc import ServerProcess, scrape_async
from tests.support.timing import eventually, eventually_sync, timeout
from ticker.backoff import Backoff
from ticker.client import (
    ClientClosedError,
    ConnectError,
    Event,
    EventKind,
    InvalidSymbolError,
    Quote,
    State,
    TickerClient,
    TooManySymbolsError,
)

FAST = Backoff(base=0.05, cap=0.5)
ARGS = ["--sim-rate", "50", "--log-level", "warning"]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "clients.md"


async def wait_event(events: list[Event], kind: EventKind, within: float = 15.0, after: int = 0) -> int:
    """Index of the first event of ``kind`` at or after ``after``; fails after ``within`` seconds (scaled)."""

    def first() -> list[int]:
        return [i for i in range(after, len(events)) if events[i].kind is kind][:1]

    return (await eventually(first, within, f"a {kind} event"))[0]


def five_line_consumer(url: str) -> str:
    """The Python example of docs/clients.md, pointed at ``url``."""
    text = DOCS.read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block, "docs/clients.md has no python example"
    code = block.group(1)
    assert "ws://127.0.0.1:8888/ws" in code
    return code.replace("ws://127.0.0.1:8888/ws", url)


def test_documented_five_line_consumer_keeps_consuming_across_a_restart(tmp_path: Path):
    """The docs' consumer, run unchanged as a service, prints quotes before and after a server restart."""
    srv = ServerProcess(ARGS).start()
    port = srv.port
    script = tmp_path / "consumer.py"
    script.write_text(five_line_consumer(srv.ws_url))
    lines: list[str] = []
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    srv2: ServerProcess | None = None
    try:
        assert proc.stdout is not None

        def read_until(pred, within: float) -> None:
            def one_more_line() -> bool:
                line = proc.stdout.readline()  # type: ignore[union-attr]
                assert line, "the consumer died: " + (proc.stderr.read() if proc.stderr else "")
                lines.append(line)
                return pred()

            eventually_sync(one_more_line, within, "enough lines from the consumer", interval=0)

        read_until(lambda: len(lines) >= 20, 15)
        before = len(lines)
        srv.stop()
        restarted_at = time.time()
        srv2 = ServerProcess(ARGS, port=port).start()
        read_until(lambda: len(lines) >= before + 40, 20)
        after = [ln.split() for ln in lines[before:]]
        assert {a[0] for a in after} == {"AAPL", "MSFT"}
        # Quotes of the new server arrived (timestamps after the restart), without any user code.
        stamps = [a[2] + " " + a[3] for a in after]
        from datetime import datetime

        newest = max(datetime.fromisoformat(s).timestamp() for s in stamps)
        assert newest > restarted_at
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(timeout(5))
        srv.stop()
        if srv2 is not None:
            srv2.stop()


async def test_resumes_after_restart_with_events_and_snapshot():
    srv = ServerProcess(ARGS).start()
    port = srv.port
    events: list[Event] = []
    srv2: ServerProcess | None = None
    try:
        async with TickerClient(srv.ws_url, ["AAPL", "MSFT"], backoff=FAST, on_event=events.append) as client:
            assert client.state is State.CONNECTED
            assert set(client.latest) == {
                "AAPL",
                "MSFT",
            }  # the initial snapshot is applied before start returns
            while client.latest["AAPL"].seq < 60:  # let sequence numbers climb on the first server
                await take(client, 1)
            old_seq = client.latest["AAPL"].seq
            await asyncio.to_thread(srv.stop)
            srv2 = await asyncio.to_thread(ServerProcess(ARGS, port=port).start)
            i = await wait_event(events, EventKind.RESUMED)
            kinds = [e.kind for e in events[: i + 1]]
            assert EventKind.DISCONNECTED in kinds and EventKind.RECONNECTING in kinds
            assert kinds.index(EventKind.DISCONNECTED) < kinds.index(EventKind.RECONNECTING) < i
            assert events[kinds.index(EventKind.DISCONNECTED)].error is not None
            # The new process numbers from 1 again: its snapshot won although its q is lower.
            assert client.latest["AAPL"].seq < old_seq
            got = await take(client, 30)
            assert {q.symbol for q in got} == {"AAPL", "MSFT"}
            assert got[-1].ts_ms > time.time() * 1000 - 5000
            assert client.state is State.CONNECTED and client.connections == 2
            for sym in ("AAPL", "MSFT"):
                # Quotes buffered before the restart come first; q goes back once (the new
                # process's snapshot) and never again on the new connection.
                seqs = [q.seq for q in got if q.symbol == sym]
                drops = [i for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]]
                assert len(drops) <= 1, seqs
                new = seqs[drops[0] :] if drops else seqs
                assert new == sorted(set(new)), seqs
    finally:
        srv.stop()
        if srv2 is not None:
            srv2.stop()


async def test_subscribe_unsubscribe_at_any_time(inprocess: InProcessServer):
    async with TickerClient(inprocess.ws_url, ["AAPL"], backoff=FAST) as client:
        assert await client.subscribe("msft", "NVDA") == {"AAPL", "MSFT", "NVDA"}
        assert {"MSFT", "NVDA"} <= set(client.latest)  # their snapshot arrived with the answer
        got = await take(client, 60)
        assert {q.symbol for q in got} == {"AAPL", "MSFT", "NVDA"}
        assert await client.unsubscribe("AAPL", "NVDA") == {"MSFT"}
        assert set(client.latest) == {"MSFT"}
        later = await take(client, 40)
        assert {q.symbol for q in later} == {"MSFT"}
        assert client.symbols == {"MSFT"}


async def test_subscribe_errors_raise(inprocess: InProcessServer):
    with pytest.raises(InvalidSymbolError):
        TickerClient(inprocess.ws_url, ["AAPL", "no good"])
    async with TickerClient(inprocess.ws_url, ["AAPL"]) as client:
        with pytest.raises(InvalidSymbolError) as info:
            await client.subscribe("MSFT", "bad$")
        assert info.value.symbols == ["bad$"] and "'bad$'" in str(info.value)
        assert client.symbols == {"AAPL"}  # nothing of a refused request is applied
        await client.unsubscribe("AAPL")
        with pytest.raises(TooManySymbolsError) as too_many:  # refused by the server (cap 500)
            await client.subscribe(*[f"S{i}" for i in range(501)])
        assert too_many.value.code == "too_many_symbols" and "500" in too_many.value.message
        assert client.symbols == set()
        assert await client.subscribe("MSFT") == {"MSFT"}  # the connection is fine afterwards


async def test_refused_initial_subscription_fails_start():
    async with serve_in_process(max_symbols=2) as srv:
        client = TickerClient(srv.ws_url, ["AAPL", "MSFT", "NVDA"])
        with pytest.raises(TooManySymbolsError):
            await client.start()
        assert client.state is State.CLOSED


async def test_refused_handshake_fails_fast(inprocess: InProcessServer):
    t0 = time.monotonic()
    with pytest.raises(ConnectError, match="403"):
        await TickerClient(inprocess.ws_url, ["AAPL"], headers={"Origin": "http://evil.example"}).start()
    with pytest.raises(ConnectError, match="404"):
        await TickerClient(inprocess.url + "/nope", ["AAPL"]).start()
    assert time.monotonic() - t0 < 5


async def test_unreachable_server_times_out():
    client = TickerClient("ws://127.0.0.1:9/ws", ["AAPL"], backoff=FAST, connect_timeout=0.5)
    with pytest.raises(ConnectError, match="no connection"):
        await client.start()
    assert client.state is State.CLOSED


async def test_silent_server_is_detected_by_ping_and_the_client_resumes():
    with ServerProcess(ARGS) as srv:
        events: list[Event] = []
        client = TickerClient(
            srv.ws_url,
            ["AAPL"],
            backoff=FAST,
            ping_interval=0.3,
            ping_timeout=0.6,
            handshake_timeout=1.0,
            on_event=events.append,
        )
        async with client:
            await take(client, 5)
            srv.signal(signal.SIGSTOP)  # the TCP connection stays open, but nothing answers
            try:
                i = await wait_event(events, EventKind.DISCONNECTED, within=5)
                assert "no pong" in str(events[i].error) or "no answer" in str(events[i].error)
                await wait_event(events, EventKind.RECONNECTING, after=i)
            finally:
                srv.signal(signal.SIGCONT)
            await wait_event(events, EventKind.RESUMED, after=i)
            assert len(await take(client, 10)) == 10


async def test_slow_loop_is_conflated_and_bounded():
    symbols = [f"C{i}" for i in range(5)]
    args = ["--symbols", ",".join(symbols), "--sim-rate", "200", "--log-level", "warning"]
    with ServerProcess(args) as srv:
        async with TickerClient(srv.ws_url, symbols, buffer_limit=20) as client:
            # The loop does not read (1000 updates a second arrive) until the client conflated many.
            await eventually(lambda: client.conflated > 100, 5.0, "the client to conflate 100 updates")
            # Take exactly what waits now: quotes arriving while we read must not blur the bound.
            got = [await anext(client) for _ in range(client.pending)]
            assert len(got) <= 20 + len(symbols)
            for sym in symbols:
                seqs = [q.seq for q in got if q.symbol == sym]
                assert seqs == sorted(seqs)
                # the last one handed out is the latest value the client knows (or newer ones came)
                assert seqs[-1] <= client.latest[sym].seq
            # latest[] kept up the whole time
            assert max(q.ts_ms for q in client.latest.values()) > time.time() * 1000 - 1000


async def test_events_iterator_and_clean_close(inprocess: InProcessServer):
    key = 'ticker_connections_closed_total{reason="client",transport="ws"}'
    before = (await scrape_async(inprocess.url)).get(key, 0)
    client = TickerClient(inprocess.ws_url, ["AAPL"])
    stream = client.events()
    kinds: list[EventKind] = []

    async def collect() -> None:
        async for ev in stream:
            kinds.append(ev.kind)

    collector = asyncio.create_task(collect())
    await client.start()
    await take(client, 3)
    await client.close()
    await asyncio.wait_for(collector, timeout(2))  # the event stream ends with the client
    assert kinds == [EventKind.CONNECTED, EventKind.CLOSED]
    assert client.state is State.CLOSED

    async def rest() -> list[Quote]:
        return [q async for q in client]

    # Iteration ends (after the buffered quotes) instead of waiting.
    await asyncio.wait_for(rest(), timeout(1))
    with pytest.raises(ClientClosedError):
        await client.subscribe("MSFT")
    await client.close()  # idempotent

    async def closed_cleanly() -> bool:
        return (await scrape_async(inprocess.url)).get(key, 0) > before

    await eventually(closed_cleanly, 2.5, "the server to count a clean client close")
