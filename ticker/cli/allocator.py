"""The memory allocator of a long-running command (``--allocator``): jemalloc where it is installed.

CPython keeps objects of 512 bytes or less in 1 MiB arenas of its own (pymalloc) and gives an arena back
only when every object in it is gone. After thousands of connections close, the few long-lived objects
made while they were open (a bar, a last value, a market's state) keep most of the arenas the
connections filled, and the process stays near its peak: 49 MiB before 20,000 WebSockets, 162 MiB after
they closed (``make stress QUICK=1 ATTACK=fd``). With jemalloc every object comes from it
(``PYTHONMALLOC=malloc``), and its pages go back to the system within seconds of being freed (its decay,
or at once when the server trims after connections leave, :mod:`ticker.server.heap`): 52 → 75 MiB in the
same run, at the same CPU per update in ``make bench``.

``auto`` (the default) runs on jemalloc when ``libjemalloc`` is installed (Debian: ``libjemalloc2``) and on
Python's own allocator otherwise (or on what ``PYTHONMALLOC`` says, when the operator set it); ``jemalloc``
requires it; ``pymalloc`` keeps Python's. Both settings act before the interpreter starts, so the command
executes itself again at once, with the same process id and arguments, ``LD_PRELOAD`` naming the library
and ``PYTHONMALLOC=malloc``: once only (:data:`EXEC_MARK`), only on Linux, never under ``python -E``/``-I``,
and never when ``main`` is called as a function. Should the library not load even so, the process runs on
the C library's malloc and says so in one line. Processes the command starts inherit the setting (forked
ones turn jemalloc's background thread on again: :func:`ticker.server.heap.after_fork`). ``MALLOC_CONF`` is
:data:`MALLOC_CONF` unless the operator set it.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

from ticker.server.heap import allocator

#: jemalloc's settings unless the operator gave some: a background thread gives freed pages back on time (its
#: decay, 10 s), not only when the process next allocates; objects of up to 512 bytes (nearly every Python
#: object) come from slabs of one page each instead of up to seven, so that one object outliving a burst keeps
#: one page (4 KiB on x86-64) from going back instead of up to seven (60 s after 80 connections × 500 symbols
#: left, in-process: RSS 1.16× its baseline before, 1.04× after; the CPU per update in ``make bench`` is the
#: same). ``slab_sizes`` needs jemalloc 5.2 or later.
MALLOC_CONF = "background_thread:true,slab_sizes:1-512:1"
#: Set in the environment of the command executed again: it never tries a second time (a library that
#: failed to load would otherwise loop).
EXEC_MARK = "TICKER_ALLOCATOR_EXEC"


class AllocatorError(RuntimeError):
    """``--allocator jemalloc`` where it cannot be had."""


def prepare(choice: str, entry: bool) -> None:
    """Run on the allocator ``choice`` names: return when this process already does (or cannot, for
    ``auto``), else execute the command again with it (this does not return). ``entry``: the command is
    this process's own (``main`` called as a function never executes anything).

    Raises :class:`AllocatorError` for ``jemalloc`` where it cannot be had."""
    if choice == "pymalloc" or allocator() == "jemalloc" or not entry:
        if choice == "jemalloc" and allocator() != "jemalloc" and not entry:
            raise AllocatorError(
                "--allocator jemalloc needs the ticker command itself (not main() in a program)"
            )
        return
    if choice == "auto" and os.environ.get("PYTHONMALLOC"):  # the operator's own choice stands
        return
    if sys.flags.ignore_environment:  # python -E or -I: PYTHONMALLOC would not be read
        if choice == "jemalloc":
            raise AllocatorError(
                "--allocator jemalloc cannot act under python -E or -I (PYTHONMALLOC is ignored)"
            )
        return
    library = ctypes.util.find_library("jemalloc") if sys.platform == "linux" else None
    if library is None or os.environ.get(EXEC_MARK):
        if choice == "jemalloc":
            why = (
                "is not installed (Debian: apt-get install libjemalloc2)"
                if library is None
                else "failed to load"
            )
            raise AllocatorError(f"--allocator jemalloc, but libjemalloc {why}")
        if library is not None:  # executed again, and the library did not load: say so once
            sys.stderr.write(f"ticker: warning: {library} did not load; running on the C library's malloc\n")
        return
    env = dict(os.environ)
    preload = env.get("LD_PRELOAD", "")
    env["LD_PRELOAD"] = f"{library}:{preload}" if preload else library
    env["PYTHONMALLOC"] = "malloc"
    env.setdefault("MALLOC_CONF", MALLOC_CONF)
    env[EXEC_MARK] = "1"
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError as exc:
        if choice == "jemalloc":
            raise AllocatorError(f"--allocator jemalloc: could not start again ({exc.strerror})") from None
