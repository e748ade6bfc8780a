"""The feed process's heartbeat and a child's watch of its supervisor (ticker/server/supervision.py)."""

from __future__ import annotations

import asyncio
import os

from tests.support.timing import eventually
from ticker.server.supervision import heartbeat, watch_parent


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 64)
    except BlockingIOError:
        return b""


async def test_heartbeat_beats_from_the_loop_until_stopped() -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        stop = heartbeat(w, every=0.01)
        assert _read(r) == b"."  # one at once: a restart's backoff counts as alive
        await eventually(lambda: _read(r), 3, "a further beat")
        stop()
        await asyncio.sleep(0.05)  # five periods: nothing more
        _read(r)
        await asyncio.sleep(0.05)
        assert _read(r) == b""
    finally:
        os.close(r)
        os.close(w)


async def test_heartbeat_goes_on_past_a_full_pipe() -> None:
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        while True:  # fill it: the supervisor stopped reading
            try:
                os.write(w, b"x" * 65536)
            except BlockingIOError:
                break
        os.set_blocking(r, False)
        stop = heartbeat(w, every=0.01)
        await asyncio.sleep(0.05)  # beats that cannot be written
        while _read(r):  # the supervisor reads again
            pass
        await eventually(lambda: _read(r) == b".", 3, "beats again")
        stop()
    finally:
        os.close(r)
        os.close(w)


async def test_heartbeat_without_a_pipe_does_nothing() -> None:
    heartbeat(None)()


async def test_watch_parent_stops_once_the_parent_is_another() -> None:
    stopped = asyncio.Event()
    await asyncio.wait_for(watch_parent(os.getppid() + 1, stopped.set, every=0.01), 5)
    assert stopped.is_set()


async def test_watch_parent_waits_while_the_parent_is_the_same() -> None:
    stopped = asyncio.Event()
    task = asyncio.create_task(watch_parent(os.getppid(), stopped.set, every=0.01))
    await asyncio.sleep(0.1)  # ten looks
    assert not stopped.is_set() and not task.done()
    task.cancel()
