"""Command line, shutdown, workers and packaging, as an operator meets them."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.serverproc import ServerProcess, scrape
from tests.support.timing import eventually_sync, timeout
from tests.support.wsclient import collect_quotes, recv

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--port", "99999"], {}, "port must be 0-65535"),
        (["--sim-rate", "-1"], {}, "must be positive"),
        (["--flush-ms", "abc"], {}, "--flush-ms"),
        (["--feed", "nope"], {}, "unknown feed 'nope'"),
        (["--symbols", "AAPL,bad$"], {}, "invalid symbol"),
        (["--log-level", "loud"], {}, "--log-level"),
        (["--bogus"], {}, "unrecognized arguments: --bogus"),
        ([], {"TICKER_PORT": "abc"}, "--port"),
        ([], {"TICKER_SIM_RATE": "0"}, "must be positive"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(argv, env, needle):
    r = subprocess.run(
        [sys.executable, "-m", "ticker", "serve", *argv],
        capture_output=True,
        text=True,
        timeout=timeout(30),
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_env_vars_configure_the_server():
    env = {"TICKER_SYMBOLS": "aapl,ibm", "TICKER_SIM_RATE": "5", "TICKER_LOG_LEVEL": "warning"}
    with (
        ServerProcess(env=env) as srv,
        urllib.request.urlopen(srv.url + "/api/symbols", timeout=timeout(5)) as r,
    ):
        assert r.read() == b'{"symbols":["AAPL","IBM"]}'


async def test_sigterm_closes_clients_1001_and_exits_0_quickly():
    srv = ServerProcess(["--log-level", "warning"]).start()
    try:
        clients = [await connect(srv.ws_url + "?symbols=AAPL") for _ in range(3)]
        for ws in clients:
            await recv(ws)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        for ws in clients:
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), timeout(5))
            assert ws.close_code == 1001
        assert await asyncio.to_thread(srv.wait, 5) == 0
        assert time.monotonic() - t0 < 5  # the promise (docs/operations.md), not a timeout: never scaled
    finally:
        srv.stop()


def test_sigint_exits_0():
    srv = ServerProcess(["--log-level", "warning"]).start()
    srv.signal(signal.SIGINT)
    assert srv.wait(5) == 0


async def test_workers_share_the_port_and_stop_together():
    args = [
        "--workers",
        "2",
        "--metrics-port",
        "0",
        "--seed",
        "1",
        "--sim-rate",
        "10",
        "--log-level",
        "warning",
    ]
    srv = ServerProcess(args).start()
    try:
        clients = [await connect(srv.ws_url + "?symbols=AAPL,MSFT") for _ in range(8)]
        for ws in clients:
            await recv(ws)
        got = await asyncio.gather(*(collect_quotes(ws, 1.0) for ws in clients))
        assert all(entries for entries in got)
        assert srv.output().count("listening on") == 2
        # Each worker has its own metrics listener, so a scrape target sees one process's counters.
        mports = [int(p) for p in re.findall(r"metrics on http://[^:]+:(\d+)/metrics", srv.output())]
        assert len(mports) == 2 and len(set(mports)) == 2
        # (a worker that got none of the 8 has no ws sample yet: the kernel may hand all of them to one)
        per_worker = [
            scrape(f"http://127.0.0.1:{p}").get('ticker_connections{transport="ws"}', 0) for p in mports
        ]
        assert sum(per_worker) == 8
        srv.signal(signal.SIGTERM)
        assert await asyncio.to_thread(srv.wait, 8) == 0
        for ws in clients:
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), timeout(5))
            assert ws.close_code == 1001
    finally:
        srv.stop()


def _sigterm_taken(pid: int) -> bool:
    """Whether ``pid`` catches SIGTERM, or blocks it while it loads (past its imports: it will end cleanly), from
    /proc/PID/status. A mask of (nearly) every signal is not that: a fork (the allocator's look for jemalloc) or a
    thread being created blocks them all for a moment, then unblocks them."""
    bit = 1 << (signal.SIGTERM - 1)
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    masks = dict(line.split(":", 1) for line in status.splitlines() if line.startswith(("SigBlk", "SigCgt")))
    blocked, caught = (int(masks.get(name, "0").strip(), 16) for name in ("SigBlk", "SigCgt"))
    return bool(caught & bit) or bool(blocked & bit and bin(blocked).count("1") <= 4)


def _children(pid: int) -> int:
    """How many processes ``pid`` has forked and not yet reaped (from any of its threads)."""
    try:
        tasks = [t.name for t in Path(f"/proc/{pid}/task").iterdir()]
        return sum(len(Path(f"/proc/{pid}/task/{t}/children").read_text().split()) for t in tasks)
    except OSError:
        return 0


#: The moments of start-up SIGTERM comes at, each an observable event: the server has taken SIGTERM (blocked while
#: it loads, then caught), it has forked its first process, and every one (a feed process and two workers).
START_STAGES = {
    "loading": lambda pid: _sigterm_taken(pid),
    "forking": lambda pid: _sigterm_taken(pid) and _children(pid) >= 1,
    "forked": lambda pid: _sigterm_taken(pid) and _children(pid) >= 3,
}


@pytest.mark.parametrize("stage", list(START_STAGES))
def test_sigterm_during_worker_start_still_exits_0(stage: str):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ticker", "serve", "--port", "0", "--workers", "2", "--log-level", "warning"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    reached = START_STAGES[stage]
    eventually_sync(
        lambda: reached(proc.pid) or proc.poll() is not None, 15.0, f"start-up {stage}", interval=0.005
    )
    assert proc.poll() is None, "the server ended before SIGTERM"
    proc.send_signal(
        signal.SIGTERM
    )  # the scenario: SIGTERM at this moment of start-up; then wait for the exit
    _, err = proc.communicate(timeout=timeout(15))
    assert proc.returncode == 0, err
