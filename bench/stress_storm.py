"""The reconnect storm of the stress suite: many Python clients (``ticker.client``) through a server restart.

``python -m bench.stress_storm --port P --count N --addrs A,B,... --symbols S,...`` is one storm worker:
it starts ``N`` :class:`~ticker.client.TickerClient` clients (client ``i`` from source address
``addrs[i % len]``, one aiohttp session per address) with their own backoff, each following one symbol,
and says ``{"event":"connected",...}`` on stdout once all are up. From then on it reports
``{"event":"resumed","n":K,"m":MONOTONIC}`` each time more of its clients have resubscribed after a
reconnect (the client's ``resumed`` event: subscribed again and the snapshot applied), until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from bench.stress_report import bounds
from bench.stress_target import ROOT, Target, log_kinds, nice_child
from bench.stress_wire import addresses
from ticker.client import Event, EventKind, TickerClient

START_CONCURRENCY = 100
PER_ADDRESS = (
    100  # clients per source address: within --connect-burst, so a restart is not refused per address
)


def emit(event: dict[str, object]) -> None:
    sys.stdout.write(orjson.dumps(event).decode() + "\n")
    sys.stdout.flush()


async def main_async(args: argparse.Namespace) -> None:
    addrs = args.addrs.split(",")
    symbols = args.symbols.split(",")
    sessions = [
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(a, 0), limit=0)) for a in addrs
    ]
    resumed: set[int] = set()
    changed = asyncio.Event()

    def on_event(i: int) -> Callable[[Event], None]:
        def handle(ev: Event) -> None:
            if ev.kind is EventKind.RESUMED and i not in resumed:
                resumed.add(i)
                changed.set()

        return handle

    url = f"ws://127.0.0.1:{args.port}/ws"
    clients = [
        TickerClient(
            url,
            [symbols[i % len(symbols)]],
            session=sessions[i % len(sessions)],
            on_event=on_event(i),
            connect_timeout=120,
        )
        for i in range(args.count)
    ]
    sem = asyncio.Semaphore(START_CONCURRENCY)
    failed = 0

    async def start(c: TickerClient) -> None:
        nonlocal failed
        async with sem:
            try:
                await c.start()
            except Exception:
                failed += 1

    await asyncio.gather(*(start(c) for c in clients))
    emit({"event": "connected", "n": args.count - failed, "failed": failed})
    loop = asyncio.get_running_loop()
    eof = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: eof.set() if not sys.stdin.readline() else None)
    while not eof.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), 0.5)
        if changed.is_set():
            changed.clear()
            emit({"event": "resumed", "n": len(resumed), "m": time.monotonic()})
    loop.remove_reader(sys.stdin.fileno())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.close() for c in clients), return_exceptions=True), 20)
    for s in sessions:
        await s.close()


def _read(proc: subprocess.Popen[str], into: list[dict[str, Any]]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        with contextlib.suppress(ValueError):
            into.append(orjson.loads(line))


def _wait(cond: Callable[[], bool], seconds: float) -> bool:
    end = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def run_storm(count: int, workers: int, symbols: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    """``count`` clients over ``workers`` processes connected to a fresh server, which is then killed
    (SIGKILL) and started again on the same port: the time until every client has resubscribed."""
    log(f"storm: {count} Python clients, the server killed and restarted on its port")
    t = Target("storm", [], []).start()
    addrs = addresses(200, max(1, math.ceil(count / PER_ADDRESS)))
    procs: list[subprocess.Popen[str]] = []
    events: list[list[dict[str, Any]]] = []
    row: dict[str, Any] = {"attack": "storm", "target": "storm", "n": count, "tally": {"counts": {}}}
    row["what"] = (
        f"{count:,} ticker.client clients from {len(addrs)} source addresses, the server SIGKILLed and restarted on its port"
    )
    try:
        for w in range(workers):
            n = count // workers + (1 if w < count % workers else 0)
            cmd = [sys.executable, "-m", "bench.stress_storm", "--port", str(t.port), "--count", str(n)]
            cmd += ["--addrs", ",".join(addrs[w::workers] or addrs), "--symbols", ",".join(symbols)]
            p = subprocess.Popen(
                cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=nice_child
            )
            procs.append(p)
            events.append([])
            threading.Thread(target=_read, args=(p, events[-1]), daemon=True).start()
        if not _wait(lambda: all(e and e[0].get("event") == "connected" for e in events), 600):
            raise RuntimeError("storm: the clients did not all connect within 600 s")
        connected = sum(e[0]["n"] for e in events)
        row["tally"]["counts"] = {
            "connected": connected,
            "failed to connect": sum(e[0]["failed"] for e in events),
        }
        log(f"storm: {connected} clients connected; killing the server")
        time.sleep(3)
        row["before"] = t.now()
        w0, m_kill = time.time(), time.monotonic()
        assert t.srv is not None
        t.srv.kill()
        t.start_server()
        m_listen = time.monotonic()

        def resumed() -> int:
            return sum(max((x["n"] for x in e if x.get("event") == "resumed"), default=0) for e in events)

        _wait(lambda: resumed() >= connected, 120)
        m_all = max(
            (x["m"] for e in events for x in e if x.get("event") == "resumed"), default=time.monotonic()
        )
        row["tally"]["counts"]["resumed"] = resumed()
        row["storm"] = {
            "resumed": resumed(),
            "kill_to_all_s": round(m_all - m_kill, 2),
            "listening_to_all_s": round(m_all - m_listen, 2),
            "restart_s": round(m_listen - m_kill, 2),
        }
        time.sleep(2)
        row["window"] = t.window(m_kill, time.monotonic())
        row["after"] = t.now()
        row["recovery_s"] = 0
        row["metrics"] = {}
        row["logs"] = log_kinds(t.srv.lines if t.srv else [], w0, time.time())
        row["alive"] = t.alive()
    finally:
        for p in procs:
            if p.stdin is not None:
                with contextlib.suppress(OSError):
                    p.stdin.close()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        t.stop()
    row["bounds"] = bounds(row)
    log(f"storm: {row['storm']}; {', '.join(row['bounds']) or 'within bounds'}")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--addrs", required=True)
    ap.add_argument("--symbols", required=True)
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import uvloop

    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
