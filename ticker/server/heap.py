"""Giving freed heap back to the system after slow readers and other connections go.

glibc's ``free()`` returns memory to the system only from the top of the heap; the blocks a slow reader's
backlog and a closed connection's objects left in the middle stay in the process (RSS) until
``malloc_trim(0)`` releases their pages. The fan-out counts what connections that went away let go (their
unsent bytes plus :data:`CONNECTION_BYTES` each, :meth:`Fanout.take_released`); past :data:`TRIM_AFTER`
the node calls :func:`trim` off the event loop (ctypes lets go of the GIL meanwhile), which trims once more
:data:`SETTLE` seconds after its last call. A trim takes about 1 ms (up to 8 ms measured on a 90 MB heap),
during which the event loop's own allocations may wait for the heap's lock. Without glibc (musl, macOS)
:func:`trim` does nothing.

On jemalloc (``--allocator``, :mod:`ticker.cli.allocator`) a trim purges every jemalloc arena's free pages
(``mallctl("arena.<all>.purge")``) instead: Python's objects live there too (``PYTHONMALLOC=malloc``), so
what closed connections held goes back whole. On Python's own allocator, a trim cannot give back its small
objects (512 bytes or less): they sit in 1 MiB arenas of its own, freed only when wholly empty, and the
long-lived objects made while connections were open (quotes, bars, the market's state) keep some of the
arenas those connections filled. That memory is reused by the next connections rather than grown again
(docs/operations.md, "Memory of slow readers").

Pages come back only once nothing alive is left on them. Closed connections leave reference cycles that
Python's oldest generation keeps for a long while: :class:`Aftermath` tells the node when a burst of closes
is over, for one full collection (:func:`collect`) before the trim (docs/operations.md, "After a burst").
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
from collections.abc import Callable
from typing import Any

TRIM_AFTER = 16 << 20  # bytes let go by closed connections before the heap is trimmed
#: What a closed connection's own objects leave free besides its unsent bytes (an idle WebSocket holds about
#: 19 KiB), so that 800 connections closing trim the heap even when none had a backlog.
CONNECTION_BYTES = 20 << 10
#: Seconds after the last trim before one more: what closing connections let go meanwhile (a close handshake
#: waits up to 5 s), and the free pages the heap touched again.
SETTLE = 6.0


_ARENAS_ALL = 4096  # jemalloc's MALLCTL_ARENAS_ALL: "arena.4096.purge" purges every arena


def _symbol(name: str) -> Any:
    try:
        return getattr(ctypes.CDLL(None), name)  # the symbols of the running process, libc among them
    except (OSError, AttributeError):
        return None


def allocator() -> str:
    """Where this process's memory comes from: ``jemalloc`` (loaded, Python's objects on it too),
    ``malloc`` (the C library's, ``PYTHONMALLOC=malloc``) or ``pymalloc`` (Python's small-object arenas)."""
    if os.environ.get("PYTHONMALLOC", "") not in ("malloc", "malloc_debug"):
        return "pymalloc"
    return "jemalloc" if _symbol("mallctl") is not None else "malloc"


def _trimmer() -> Callable[[int], int] | None:
    mallctl = _symbol("mallctl")
    if mallctl is not None:  # jemalloc: purge the free pages of every arena
        mallctl.argtypes = [
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
        ]
        mallctl.restype = ctypes.c_int
        name = f"arena.{_ARENAS_ALL}.purge".encode()
        return lambda pad: int(mallctl(name, None, None, None, 0))
    fn = _symbol("malloc_trim")
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_TRIM = _trimmer()


def after_fork() -> None:
    """In a forked child (``--workers``, the shared feed process): jemalloc stops its background thread in a
    child; start it again when the parent ran one (``opt.background_thread``). Nothing elsewhere."""
    mallctl = _symbol("mallctl")
    if mallctl is None:
        return
    opt, size = ctypes.c_bool(False), ctypes.c_size_t(ctypes.sizeof(ctypes.c_bool))
    if mallctl(b"opt.background_thread", ctypes.byref(opt), ctypes.byref(size), None, 0) == 0 and opt.value:
        on = ctypes.c_bool(True)
        mallctl(b"background_thread", None, None, ctypes.byref(on), ctypes.sizeof(on))


#: A full garbage collection follows a burst that let go objects of at least this many bytes (closed
#: connections, :data:`CONNECTION_BYTES` each; dropped bars; rebuilt tables), once it is over
#: (:data:`QUIET_SECONDS` in a row letting go less than :data:`QUIET_BYTES` each) and only if they weigh at
#: least what the connections still open do. Closed connections leave reference cycles (Tornado's handlers,
#: streams and callbacks) in the oldest generation, which Python collects only after it grew by a quarter;
#: and only a full collection empties the interpreter's free lists (tuples, floats, dicts), whose spare
#: objects, made during the burst, sit on its pages. Left there, both keep those pages (measured: 20 MB of 60
#: after 15,000 WebSockets went; 8 MB of 57 after a demand of 40,000 symbols). A collection takes about 10 ms
#: per 100,000 objects alive (24 ms after those 15,000 went): none runs while a burst goes on, nor while the
#: connections still open weigh more, nor for a trickle (:meth:`Aftermath.tick`).
COLLECT_AFTER = 4 << 20
QUIET_BYTES = 1 << 20
QUIET_SECONDS = 3


class Aftermath:
    """When to collect and trim after connections and symbols went: feed it what was let go each second
    (:meth:`tick`), it says whether a full collection is due now (the burst is over) and whether a trim is."""

    __slots__ = ("objects", "quiet", "released")

    def __init__(self) -> None:
        self.released = 0  # bytes let go since the last trim
        self.objects = 0  # bytes of objects let go in the burst going on
        self.quiet = 0  # seconds in a row that let go less than QUIET_BYTES

    def tick(self, released: int, objects: int, live: int, can_trim: bool = True) -> tuple[bool, bool]:
        """One second's worth: ``released`` bytes let go (unsent bytes too), ``objects`` of them objects (closed
        connections, dropped bars, rebuilt tables), ``live`` bytes the open connections hold; (collect now, trim
        now). Whether to collect is decided once, as a quiet spell begins; what goes during one (a trickle)
        never counts. A trim waits while ``can_trim`` is false (one is running), what it is for kept."""
        self.released += released
        self.objects += objects
        self.quiet = self.quiet + 1 if released < QUIET_BYTES else 0
        collect = False
        if self.quiet >= QUIET_SECONDS:
            collect = self.quiet == QUIET_SECONDS and self.objects >= max(COLLECT_AFTER, live)
            self.objects = 0
        trim = can_trim and (self.released >= TRIM_AFTER or (collect and self.released > 0))
        if trim:
            self.released = 0
        return collect, trim


def collect() -> int:
    """A full garbage collection (in the event loop's thread: it holds the interpreter meanwhile); the
    unreachable objects found."""
    return gc.collect()


_lock = threading.Lock()
_settle: threading.Timer | None = None  # the trim due ``SETTLE`` s after the last one


def trim(settle: float = SETTLE) -> bool:
    """Release the free pages of the C heap (glibc ``malloc_trim(0)``, jemalloc's purge) now, in the calling
    thread (run it in an executor), and once more ``settle`` seconds after the last call, in a daemon timer
    thread (it never holds up the process's exit). False where there is no trim."""
    global _settle
    if _TRIM is None:
        return False
    _TRIM(0)
    if settle > 0:
        with _lock:
            if _settle is not None:
                _settle.cancel()
            _settle = threading.Timer(settle, _TRIM, (0,))
            _settle.daemon = True
            _settle.start()
    return True
