"""What a ``--workers`` child does to stay under its supervisor: a heartbeat, and an end when it is gone.

- :func:`heartbeat`: the feed process writes one byte a second, from its event loop, to a pipe the supervisor
  reads (:class:`~ticker.server.sharedmarket.SharedMarket` kills one that stays silent: a hung process).
- :func:`end_with_parent`: right after ``fork()``, a child asks the kernel for SIGTERM when the supervisor
  dies (Linux ``PR_SET_PDEATHSIG``); :func:`watch_parent` is the fallback where that is unavailable.
- :func:`parent_gone`: whether the supervisor died (the child is adopted, or it is dying).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable

BEAT_EVERY = 1.0  # seconds between two heartbeats
WATCH_EVERY = 1.0  # seconds between two looks at the parent pid (the fallback of PR_SET_PDEATHSIG)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):  # loaded before any fork
    with contextlib.suppress(OSError):
        _libc = ctypes.CDLL(None, use_errno=True)


def heartbeat(fd: int | None, every: float = BEAT_EVERY) -> Callable[[], None]:
    """From now on write one byte to ``fd`` every ``every`` seconds from the running event loop (a loop that
    is blocked does not beat); nothing when ``fd`` is None. A full pipe or a gone reader is ignored. Returns
    a function that stops the beats."""
    if fd is None:
        return lambda: None
    os.set_blocking(fd, False)
    loop = asyncio.get_running_loop()
    handle: asyncio.Handle | None = None

    def beat() -> None:
        nonlocal handle
        with contextlib.suppress(OSError):  # full (the supervisor is stopped) or closed (it is gone)
            os.write(fd, b".")
        handle = loop.call_later(every, beat)

    def stop() -> None:
        if handle is not None:
            handle.cancel()

    beat()
    return stop


def parent_gone(parent: int) -> bool:
    """Whether ``parent`` (this process's supervisor) died: this process was adopted, or ``parent`` is dying.

    ``PR_SET_PDEATHSIG`` comes when the *thread* that forked this process ends: a killed supervisor's main thread
    ends before its other threads (jemalloc's background thread, say), and until the last one has ended this
    process's parent is still ``parent``, whose main thread is then a zombie (``/proc/PID/stat``)."""
    if os.getppid() != parent:
        return True
    try:
        with open(f"/proc/{parent}/stat", "rb") as f:
            stat = f.read()
    except OSError:  # no /proc: the parent pid alone says it
        return False
    return stat.rsplit(b")", 1)[-1].split()[:1] in ([b"Z"], [b"X"])


def end_with_parent(parent: int, sig: int = signal.SIGTERM) -> bool:
    """In a child just forked by ``parent``: ``sig`` comes to this process when ``parent`` ends (sent now if
    it has ended already). False when the kernel offers no ``PR_SET_PDEATHSIG``: use :func:`watch_parent`."""
    armed = _libc is not None and _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), sig)
    return armed


async def watch_parent(parent: int, stop: Callable[[], object], every: float = WATCH_EVERY) -> None:
    """Call ``stop()`` once this process's parent is no longer ``parent`` (it died: the child was adopted)."""
    while True:  # polled: nothing signals a parent's death without PR_SET_PDEATHSIG
        await asyncio.sleep(every)
        if os.getppid() != parent:
            break
    stop()
