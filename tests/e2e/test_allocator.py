"""The allocator a served process runs on (``--allocator``, ticker/cli/allocator.py): jemalloc by default where
it is installed (the test machines install libjemalloc2: .ci/system-deps.sh), Python's own on request, in the
same process the command started (no second process: its pid is the one that listens)."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.serverproc import ServerProcess
from tests.support.timing import eventually_sync
from ticker.cli import allocator

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="jemalloc is preloaded on Linux only"),
    pytest.mark.skipif(ctypes.util.find_library("jemalloc") is None, reason="libjemalloc is not installed"),
    pytest.mark.skipif(bool(os.environ.get("PYTHONMALLOC")), reason="PYTHONMALLOC set: auto keeps it"),
]

ARGS = ["--host", "127.0.0.1", "--log-level", "info", "--sim-rate", "5", "--seed", "7"]


def libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def environment(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)


def test_a_served_process_runs_on_jemalloc_by_default() -> None:
    with ServerProcess(ARGS) as srv:
        assert srv.proc is not None
        pid = srv.proc.pid  # the process started is the one that listens: executed again in place
        assert "libjemalloc" in libraries(pid)
        env = environment(pid)
        assert env["PYTHONMALLOC"] == "malloc" and env["MALLOC_CONF"] == allocator.MALLOC_CONF
        assert "memory: jemalloc)" in srv.output()
        assert "<jemalloc>" not in srv.output()  # jemalloc says so on stderr when it rejects a setting


SLABS = """
import ctypes
lib = ctypes.CDLL(None)
def read(name, kind):
    value, size = kind(0), ctypes.c_size_t(ctypes.sizeof(kind))
    assert lib.mallctl(name.encode(), ctypes.byref(value), ctypes.byref(size), None, 0) == 0, name
    return value.value
page = read("arenas.page", ctypes.c_size_t)
for i in range(read("arenas.nbins", ctypes.c_uint)):
    size, slab = read(f"arenas.bin.{i}.size", ctypes.c_size_t), read(f"arenas.bin.{i}.slab_size", ctypes.c_size_t)
    print(size, slab // page)
"""


def test_small_objects_come_from_one_page_slabs() -> None:
    """The default ``MALLOC_CONF`` takes effect: every size class up to 512 bytes on slabs of one page (jemalloc's
    own choice is up to seven pages: one object outliving a burst would keep them all from going back)."""
    env = {**os.environ, "LD_PRELOAD": str(ctypes.util.find_library("jemalloc")), "PYTHONMALLOC": "malloc"}
    pages: dict[str, dict[int, int]] = {}
    for conf in ("", allocator.MALLOC_CONF):
        out = subprocess.run(
            [sys.executable, "-c", SLABS],
            env={**env, "MALLOC_CONF": conf},
            capture_output=True,
            text=True,
            check=True,
        )
        assert "<jemalloc>" not in out.stderr
        pages[conf] = {int(size): int(n) for size, n in (line.split() for line in out.stdout.splitlines())}
    small = [size for size in pages[""] if size <= 512]
    assert max(pages[""][size] for size in small) > 1  # jemalloc's own choice: several pages
    assert {pages[allocator.MALLOC_CONF][size] for size in small} == {1}
    assert all(pages[allocator.MALLOC_CONF][size] == pages[""][size] for size in pages[""] if size > 512)


def test_pymalloc_keeps_pythons_own_allocator() -> None:
    with ServerProcess([*ARGS, "--allocator", "pymalloc"]) as srv:
        assert srv.proc is not None
        assert "libjemalloc" not in libraries(srv.proc.pid)
        assert "PYTHONMALLOC" not in environment(srv.proc.pid)
        assert "memory: pymalloc)" in srv.output()


def threads(pid: int) -> list[str]:
    return [p.read_text().strip() for p in Path(f"/proc/{pid}/task").glob("*/comm")]


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_forked_workers_run_jemallocs_background_thread_too() -> None:
    with ServerProcess([*ARGS, "--workers", "2"]) as srv:
        assert srv.proc is not None
        pid = srv.proc.pid
        workers: list[int] = eventually_sync(
            lambda: children(pid)[1:] and children(pid), 15, "the forked workers"
        )
        assert "jemalloc_bg_thd" in threads(pid)
        for child in workers:  # a fork stops the background thread in the child: each starts it again

            def started(c: int = child) -> bool:
                return "jemalloc_bg_thd" in threads(c)

            eventually_sync(started, 15, f"worker {child}'s thread")
