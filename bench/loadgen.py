"""Load generator: one process holding many WebSocket subscribers, driven over stdin/stdout.

Run by ``bench.run`` as ``python -m bench.loadgen --url ws://... --scenario JSON --first I --count N``.
It uses picows (frames parsed in C) on uvloop and counts without decoding JSON: updates are the
``"s":`` keys of a quotes frame, tick→client latency comes from every ``"t":`` value against the
client's own clock (same host), counted into a 1 ms histogram by C-level iteration.

Commands, one per line on stdin: ``mark`` (zero the counters, start the window), ``report``
(print the window's figures as one JSON line), ``quit``. Events go to stdout as JSON lines:
``{"event":"ready",...}`` once every connection is subscribed (or failed), then the answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import time
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.scenarios import Scenario

QUOTES_PREFIX = b'{"type":"quotes"'
LATENCY_SAMPLES = 8  # latency samples taken per quotes frame at most


def _number_end(payload: bytes, start: int) -> int:
    comma, brace = payload.find(b",", start), payload.find(b"}", start)
    return comma if 0 <= comma < brace else brace


def sample_latency(payload: bytes, hist: dict[int, float]) -> int:
    """Count the Q entries of a quotes frame and add tick→client latencies (ms) to ``hist``.

    Frames with at most LATENCY_SAMPLES entries contribute every entry; bigger ones contribute
    LATENCY_SAMPLES entries spread evenly through the frame, each weighted by entries / samples,
    so the histogram's mass stays one per update without scanning every entry.
    """
    now = int(time.time() * 1000)
    n = payload.count(b'"s":')
    find = payload.find
    if n <= LATENCY_SAMPLES:
        i = find(b'"t":')
        while i >= 0:
            end = _number_end(payload, i + 4)
            x = now - int(payload[i + 4 : end])
            hist[x] = hist.get(x, 0.0) + 1.0
            i = find(b'"t":', end)
    else:
        weight = n / LATENCY_SAMPLES
        stride = len(payload) // LATENCY_SAMPLES
        for k in range(LATENCY_SAMPLES):
            i = find(b'"t":', k * stride)
            if i < 0:
                break
            end = _number_end(payload, i + 4)
            x = now - int(payload[i + 4 : end])
            hist[x] = hist.get(x, 0.0) + weight
    return n


CONNECT_CONCURRENCY = 100


class Stats:
    """Counters of one load-generator process over the current window."""

    def __init__(self) -> None:
        self.reset()
        self.subscribed = 0
        self.expected = 0  # acknowledgements awaited
        self.all_acked = asyncio.Event()
        self.connect_failed = 0
        self.stopping = False

    def reset(self) -> None:
        self.frames = 0
        self.updates = 0
        self.bytes = 0
        self.snapshots = 0
        self.other = 0
        self.server_errors = 0
        self.disconnects = 0
        self.latency: dict[int, float] = {}


class Subscriber(WSListener):
    """One connection: subscribes on connect, then counts what arrives."""

    def __init__(self, stats: Stats, request: bytes) -> None:
        self.stats = stats
        self.request = request
        self.acked = False
        self.partial: bytearray | None = None

    def subscribe(self, transport: WSTransport) -> None:
        """Send this connection's subscribe request."""
        transport.send(WSMsgType.TEXT, self.request)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        if mt is WSMsgType.TEXT or mt is WSMsgType.BINARY or mt is WSMsgType.CONTINUATION:
            if not frame.fin or self.partial is not None:  # fragmented message: rare, assemble it
                if self.partial is None:
                    self.partial = bytearray()
                self.partial += frame.get_payload_as_memoryview()
                if not frame.fin:
                    return
                payload, self.partial = bytes(self.partial), None
            else:
                payload = frame.get_payload_as_bytes()
            self.message(payload)
        elif mt is WSMsgType.CLOSE:
            if not self.stats.stopping:
                self.stats.disconnects += 1
            transport.disconnect()

    def message(self, payload: bytes) -> None:
        st = self.stats
        if payload.startswith(QUOTES_PREFIX):
            st.frames += 1
            st.updates += sample_latency(payload, st.latency)
            st.bytes += len(payload)
            return
        try:
            msg: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            st.server_errors += 1
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "quotes":  # keys in another order than the fast path expects
            now = int(time.time() * 1000)
            st.frames += 1
            st.updates += len(msg["data"])
            st.bytes += len(payload)
            for q in msg["data"]:
                x = now - int(q["t"])
                st.latency[x] = st.latency.get(x, 0.0) + 1.0
        elif kind == "subscribed":
            if not self.acked:
                self.acked = True
                st.subscribed += 1
                if st.subscribed >= st.expected:
                    st.all_acked.set()
        elif kind == "snapshot":
            st.snapshots += 1
        elif kind == "error":
            st.server_errors += 1
        else:
            st.other += 1

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.stats.stopping:
            self.stats.disconnects += 1


def raise_fd_limit() -> None:
    """Raise RLIMIT_NOFILE to its hard limit (each connection is one descriptor)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds() -> float:
    """User + system CPU seconds used by this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def wait_seconds() -> float:
    """Seconds this process's threads spent runnable but waiting for a CPU."""
    from bench.procs import run_wait_seconds

    return run_wait_seconds([os.getpid()])


def emit(event: dict[str, Any]) -> None:
    """Write one JSON event line to stdout."""
    sys.stdout.write(orjson.dumps(event).decode() + "\n")
    sys.stdout.flush()


async def connect_all(
    url: str, sc: Scenario, first: int, count: int, stats: Stats
) -> list[tuple[WSTransport, Subscriber]]:
    """Open ``count`` connections (numbers ``first``..) with bounded concurrency, not yet subscribed."""
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
    conns: list[tuple[WSTransport, Subscriber]] = []

    async def one(i: int) -> None:
        request = orjson.dumps({"op": "subscribe", "symbols": sc.symbols_for(i)})
        async with sem:
            try:
                transport, listener = await ws_connect(
                    lambda: Subscriber(stats, request), url, websocket_handshake_timeout=30
                )
            except Exception:  # refused, reset, handshake timeout or rejection: all count as failures
                stats.connect_failed += 1
                return
        assert isinstance(listener, Subscriber)
        conns.append((transport, listener))

    await asyncio.gather(*(one(i) for i in range(first, first + count)))
    return conns


async def main_async(args: argparse.Namespace) -> None:
    sc = Scenario(**orjson.loads(args.scenario))
    stats = Stats()
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()
    loop.add_reader(sys.stdin.fileno(), lambda: commands.put_nowait(sys.stdin.readline().strip() or "quit"))
    conns = await connect_all(args.url, sc, args.first, args.count, stats)
    transports = [t for t, _ in conns]
    emit({"event": "connected", "connected": len(conns), "connect_failed": stats.connect_failed})
    if await commands.get() != "subscribe":
        return
    stats.expected = len(conns)
    for transport, listener in conns:
        listener.subscribe(transport)
    if conns:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stats.all_acked.wait(), args.ready_timeout)
    emit(
        {
            "event": "ready",
            "connected": len(conns),
            "subscribed": stats.subscribed,
            "connect_failed": stats.connect_failed,
        }
    )
    t0, c0, w0 = time.monotonic(), cpu_seconds(), wait_seconds()
    while True:
        cmd = await commands.get()
        if cmd == "mark":
            stats.reset()
            t0, c0, w0 = time.monotonic(), cpu_seconds(), wait_seconds()
            emit({"event": "marked"})
        elif cmd == "report":
            wall, cpu, waited = time.monotonic() - t0, cpu_seconds() - c0, wait_seconds() - w0
            emit(
                {
                    "event": "report",
                    "wall": wall,
                    "cpu": cpu,
                    "cpu_wait": waited,
                    "frames": stats.frames,
                    "updates": stats.updates,
                    "bytes": stats.bytes,
                    "snapshots": stats.snapshots,
                    "other": stats.other,
                    "server_errors": stats.server_errors,
                    "disconnects": stats.disconnects,
                    "connect_failed": stats.connect_failed,
                    "connected": len(transports),
                    "subscribed": stats.subscribed,
                    "latency_ms": sorted(stats.latency.items()),
                }
            )
        else:
            break
    loop.remove_reader(sys.stdin.fileno())
    stats.stopping = True
    for t in transports:
        t.disconnect()
    await asyncio.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--scenario", required=True, help="Scenario fields as JSON")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--ready-timeout", type=float, default=60.0)
    args = ap.parse_args()
    raise_fd_limit()
    import uvloop

    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
