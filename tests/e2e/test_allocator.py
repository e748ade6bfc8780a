"""The allocator a served process runs on (``--allocator``, ticker/cli/allocator.py): jemalloc by default where
it is installed (the test machines install libjemalloc2: .ci/system-deps.sh), Python's own on request, in the
same process the command started (no second process: its pid is the one that listens)."""

from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

import pytest

from tests.support.serverproc import ServerProcess
from tests.support.timing import eventually_sync

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
        assert env["PYTHONMALLOC"] == "malloc" and env["MALLOC_CONF"] == "background_thread:true"
        assert "memory: jemalloc)" in srv.output()


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
