"""Load generator: one process holding many WebSocket subscribers, driven over stdin/stdout.

Run by ``bench.run`` as ``python -m bench.loadgen --url ws://... --scenario JSON --first I --count N``.
Connections are :class:`bench.wsclient.Subscriber` protocols on uvloop, counting without decoding
JSON (see that module); tick→client latency is the client's clock minus the quote's ``t`` (same
host), in a 1 ms histogram.

For a scenario with ``auth`` "jwt" each connection presents its own token (``sub`` ``bench-<number>``),
minted here with the HS256 secret in ``TICKER_JWT_SECRET``: without a ``ticker`` claim (everything
real-time), or for the connections :meth:`Scenario.is_delayed` picks, with every symbol delayed.

With ``delta`` every connection opens ``/ws?delta=1``; with ``max_hz`` its ``subscribe`` carries ``"max_hz"``
(issue 16). With ``bars`` each connection sends its ``subscribe_bars`` requests right after its ``subscribe``, counts
as subscribed once it has every ``bars`` reply too, and counts ``bar`` messages apart from quote updates.

Commands, one per line on stdin: ``subscribe`` (send every connection's requests), ``mark`` (zero the counters, start the window), ``report``
(print the window's figures as one JSON line), ``quit``. Events go to stdout as JSON lines:
``{"event":"connected",...}`` once every connection is open (or failed); after the ``subscribe``
command, ``{"event":"ready",...}`` once every connection is acknowledged; then the answers.
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
from urllib.parse import urlsplit

import orjson

from bench.scenarios import Scenario
from bench.servers import SECRET_ENV
from bench.wsclient import Stats, Subscriber, as_event, connect

CONNECT_CONCURRENCY = 100
TOKEN_TTL = 24 * 3600.0  # seconds: longer than any run


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


def token_for(sc: Scenario, conn: int, secret: str) -> str:
    """Connection number ``conn``'s token: all real-time, or all delayed when ``sc`` says so."""
    from tests.support.tokens import mint  # PyJWT: installed with the server extra

    if sc.is_delayed(conn):
        return mint(f"bench-{conn}", TOKEN_TTL, realtime=[], delayed=["*"], key=secret)
    return mint(f"bench-{conn}", TOKEN_TTL, key=secret)


def split_url(url: str) -> tuple[str, int, str]:
    """Host, port and request target (path with its query, e.g. ``/ws?delta=1``) of a ``ws://`` URL."""
    parsed = urlsplit(url)
    path = parsed.path or "/"
    return (
        parsed.hostname or "127.0.0.1",
        parsed.port or 80,
        f"{path}?{parsed.query}" if parsed.query else path,
    )


async def connect_all(url: str, sc: Scenario, first: int, count: int, stats: Stats) -> list[Subscriber]:
    """Open ``count`` connections (numbers ``first``..) with bounded concurrency, not yet subscribed."""
    host, port, path = split_url(url)
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
    conns: list[Subscriber] = []
    secret = os.environ.get(SECRET_ENV, "") if sc.auth == "jwt" else ""
    if sc.auth == "jwt" and not secret:
        raise SystemExit(f"--auth jwt scenario: {SECRET_ENV} is not set")
    tokens = {i: token_for(sc, i, secret) for i in range(first, first + count)} if secret else {}

    async def one(i: int) -> None:
        request = orjson.dumps(sc.subscribe_request(i))
        bar_requests = tuple(
            orjson.dumps({"op": "subscribe_bars", "symbol": s, "interval": iv, "history": sc.bar_history})
            for s, iv in sc.bar_subscriptions(i)
        )
        token, delayed = tokens.get(i), bool(secret) and sc.is_delayed(i)
        async with sem:
            try:
                async with asyncio.timeout(30.0):
                    conns.append(
                        await connect(stats, host, port, path, request, token, delayed, bar_requests)
                    )
            except Exception:  # refused, reset, handshake timeout or rejection: all count as failures
                stats.connect_failed += 1

    await asyncio.gather(*(one(i) for i in range(first, first + count)))
    return conns


async def main_async(args: argparse.Namespace) -> None:
    sc = Scenario(**orjson.loads(args.scenario))
    stats = Stats()
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()
    loop.add_reader(sys.stdin.fileno(), lambda: commands.put_nowait(sys.stdin.readline().strip() or "quit"))
    conns = await connect_all(args.url, sc, args.first, args.count, stats)
    emit({"event": "connected", "connected": len(conns), "connect_failed": stats.connect_failed})
    if await commands.get() != "subscribe":
        return
    stats.expected = len(conns)
    for conn in conns:
        conn.subscribe()
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
                    **as_event(stats),
                    "connect_failed": stats.connect_failed,
                    "connected": len(conns),
                    "subscribed": stats.subscribed,
                }
            )
        else:
            break
    loop.remove_reader(sys.stdin.fileno())
    stats.stopping = True
    for conn in conns:
        conn.disconnect()
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
