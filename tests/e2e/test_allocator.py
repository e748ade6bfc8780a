"""The allocator a served process runs on (``--allocator``, ticker/cli/allocator.py): jemalloc by default where
it is installed (the test machines install libjemalloc2: .ci/system-deps.sh), Python's own on request, in the
same process the command started (no second process: its pid is the one that listens)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.serverproc import ServerProcess

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="jemalloc is preloaded on Linux only")

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
