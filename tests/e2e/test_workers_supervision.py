"""``ticker serve --workers 2`` under its supervisor: a hung feed process is replaced, nothing outlives a killed
supervisor (docs/scaling.md, "Many workers on one host")."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.serverproc import ServerProcess, serving
from tests.support.timing import eventually, eventually_sync
from tests.support.workerskit import epochs, feed_pid, get_json, one_per_worker, ops_ports
from tests.support.wsclient import Inbox
from ticker.server.sharedmarket import WATCHDOG
from ticker.server.supervision import parent_gone

ARGS = ("--workers", "2", "--metrics-port", "0", "--symbols", "AAPL,MSFT", "--sim-rate", "5")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux ``/proc``)."""
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def port_free(port: int) -> bool:
    """Whether a plain listener (no SO_REUSEPORT, so no sharing with another) can take 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as any server: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


async def started(srv: ServerProcess) -> dict[int, int]:
    """Wait until both workers are linked to the feed process; their ops ports."""
    await eventually(
        lambda: srv.output().count("linked to the feed process") >= 2 and len(ops_ports(srv)) == 2,
        15,
        "both workers linked, their ops ports",
    )
    return ops_ports(srv)


async def clients(srv: ServerProcess) -> dict[int, Inbox]:
    """One WebSocket client on each worker, with its first quotes."""
    inboxes = {w: Inbox(ws) for w, ws in (await one_per_worker(srv.ws_url + "?symbols=AAPL,MSFT")).items()}
    await eventually(lambda: all(len(i.entries()) >= 5 for i in inboxes.values()), 15, "quotes on both")
    return inboxes


async def readiness(ports: dict[int, int]) -> set[int]:
    """The ``/readyz`` statuses of the workers."""
    return {(await asyncio.to_thread(get_json, p, "/readyz"))[0] for p in ports.values()}


async def close_all(inboxes: dict[int, Inbox]) -> None:
    for inbox in inboxes.values():
        with contextlib.suppress(Exception):
            await inbox.ws.close()


async def quotes_again(inboxes: dict[int, Inbox]) -> None:
    count = {w: len(i.entries()) for w, i in inboxes.items()}
    await eventually(lambda: all(len(i.entries()) >= count[w] + 5 for w, i in inboxes.items()), 15, "quotes")


async def test_a_hung_feed_process_is_killed_within_the_bound_and_replaced() -> None:
    async with serving(*ARGS) as srv:
        ports = await started(srv)
        [first] = epochs(srv)
        hung = feed_pid(srv)
        inboxes = await clients(srv)
        try:
            os.kill(hung, signal.SIGSTOP)  # hung: alive, silent, never exits by itself
            stopped = time.monotonic()
            try:
                killing = f"the feed process (pid {hung}) sent no heartbeat for"
                await eventually(lambda: killing in srv.output(), WATCHDOG + 5, "the watchdog's kill")
                waited = time.monotonic() - stopped
                await eventually(lambda: not alive(hung), 5, "the hung feed process gone")
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(hung, signal.SIGCONT)
            assert waited > WATCHDOG - 3, (
                waited
            )  # not before the bound (its last beat was at most 1 s before)
            restarting = f"the feed process (pid {hung}) was killed by SIGKILL; restarting it"
            await eventually(lambda: restarting in srv.output(), 5, "the supervisor reaped it")
            await eventually(lambda: len(epochs(srv)) == 2, 15, "a new feed process")
            second = epochs(srv)[-1]
            assert second != first and feed_pid(srv) != hung

            def resynced() -> bool:
                return all(any(s["e"] == second for s in i.since(0, "snapshot")) for i in inboxes.values())

            await eventually(resynced, 15, "a snapshot under the new epoch on every connection")
            await quotes_again(inboxes)
            await eventually(lambda: _all_200(ports), 10, "every worker ready again")
            assert not any(i.closed for i in inboxes.values())
        finally:
            await close_all(inboxes)


async def test_a_feed_process_stalled_less_than_the_bound_is_kept() -> None:
    async with serving(*ARGS) as srv:
        ports = await started(srv)
        [epoch] = epochs(srv)
        pid = feed_pid(srv)
        inboxes = await clients(srv)
        try:
            os.kill(pid, signal.SIGSTOP)
            try:  # stalled until the workers give up on it (SILENCE, half the watchdog's bound)
                await eventually(lambda: _all_503(ports), WATCHDOG, "every worker not ready")
            finally:
                os.kill(pid, signal.SIGCONT)
            await eventually(lambda: _all_200(ports), 15, "every worker ready again")
            await quotes_again(inboxes)
            assert epochs(srv) == [epoch] and feed_pid(srv) == pid and alive(pid)
            assert "sent no heartbeat" not in srv.output() and "restarting it" not in srv.output()
            assert srv.output().count(f"the link to the feed process is back (epoch {epoch})") >= 2
            assert not any(i.closed for i in inboxes.values())
        finally:
            await close_all(inboxes)


async def _all_503(ports: dict[int, int]) -> bool:
    return await readiness(ports) == {503}


async def _all_200(ports: dict[int, int]) -> bool:
    return await readiness(ports) == {200}


async def test_workers_and_the_feed_process_end_with_a_killed_supervisor() -> None:
    with tempfile.TemporaryDirectory() as tmp:  # where the server makes the feed process's directory
        async with serving(*ARGS, env={"TMPDIR": tmp}) as srv:
            await started(srv)
            assert srv.proc is not None
            supervisor = srv.proc.pid
            kids = children(supervisor)
            assert len(kids) == 3 and feed_pid(srv) in kids
            assert len(os.listdir(tmp)) == 1
            assert not port_free(srv.port)  # the check can fail: the workers hold the port
            inboxes = await clients(srv)
            try:
                srv.kill()  # SIGKILL: nothing of the supervisor runs
                await eventually(lambda: not any(alive(p) for p in kids), 10, "workers and feed process gone")
                assert port_free(srv.port)  # a restarted server would share it with nobody
                assert os.listdir(tmp) == []  # the orphaned feed process removed the directory
                await eventually(lambda: all(i.closed for i in inboxes.values()), 5, "clients closed")
                # The workers' own line: the feed process may say so too ("...: the feed process stops"), when
                # its look at its parent comes before the kernel's SIGTERM is handled.
                gone = f"the supervisor (pid {supervisor}) is gone: shutting down"
                await eventually(lambda: srv.output().count(gone) == 2, 5, "each worker saying why it stops")
            finally:
                await close_all(inboxes)


def test_a_parent_is_gone_once_adopted_or_while_it_is_a_zombie(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a worker and the feed process ask when SIGTERM comes: a killed supervisor's main thread (the one that
    forked them) ends first and sends it, while its other threads still make it the parent (a zombie leader)."""
    assert not parent_gone(os.getppid())
    assert parent_gone(os.getpid())  # not our parent at all
    child = subprocess.Popen(["true"])
    try:  # not reaped: a zombie until waited for, with its pid standing as our "parent"
        eventually_sync(
            lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        )
        monkeypatch.setattr(os, "getppid", lambda: child.pid)
        assert parent_gone(child.pid)
    finally:
        child.wait()
