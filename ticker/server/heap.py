"""Giving freed heap back to the system after slow readers go.

glibc's ``free()`` returns memory to the system only from the top of the heap; the blocks a slow reader's
backlog left in the middle stay in the process (RSS) until ``malloc_trim(0)`` releases their pages. The
fan-out counts the unsent bytes of connections that went away (:meth:`Fanout.take_released`); past
:data:`TRIM_AFTER` the node calls :func:`trim` off the event loop (ctypes lets go of the GIL meanwhile).
Without glibc (musl, macOS) :func:`trim` does nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

TRIM_AFTER = 16 << 20  # bytes released by closed connections before the heap is trimmed


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        fn = ctypes.CDLL(None).malloc_trim  # the symbols of the running process, libc among them
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_TRIM = _malloc_trim()


def trim() -> bool:
    """Release the free pages of the C heap (glibc ``malloc_trim(0)``); False where there is none."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
