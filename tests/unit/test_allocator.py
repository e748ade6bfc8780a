"""The allocator a long-running command runs on (ticker/cli/allocator.py) and how the heap is trimmed on it."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from ticker.cli import allocator
from ticker.server import heap


class Executed(Exception):
    """What ``os.execve`` was called with, raised in its place."""

    def __init__(self, path: str, argv: list[str], env: dict[str, str]) -> None:
        super().__init__(path)
        self.path, self.argv, self.env = path, argv, env


def _exec(path: str, argv: list[str], env: dict[str, str]) -> None:
    raise Executed(path, argv, env)


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A process on Python's allocator, on Linux, with jemalloc installed and ``os.execve`` caught."""
    for name in ("PYTHONMALLOC", "LD_PRELOAD", "MALLOC_CONF", allocator.EXEC_MARK):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: f"lib{name}.so.2")
    monkeypatch.setattr(allocator.os, "execve", _exec)
    return monkeypatch


def test_auto_executes_the_command_again_on_jemalloc(plain: pytest.MonkeyPatch) -> None:
    plain.setenv("LD_PRELOAD", "libother.so")
    with pytest.raises(Executed) as caught:
        allocator.prepare("auto", entry=True)
    ex = caught.value
    assert ex.path == sys.executable and ex.argv == [sys.executable, *sys.orig_argv[1:]]  # the same command
    assert ex.env["LD_PRELOAD"] == "libjemalloc.so.2:libother.so"  # the operator's preload stays
    assert ex.env["PYTHONMALLOC"] == "malloc" and ex.env[allocator.EXEC_MARK] == "1"
    assert ex.env["MALLOC_CONF"] == "background_thread:true,slab_sizes:1-512:1"


def test_the_operators_malloc_conf_stands(plain: pytest.MonkeyPatch) -> None:
    plain.setenv("MALLOC_CONF", "dirty_decay_ms:1000")
    with pytest.raises(Executed) as caught:
        allocator.prepare("auto", entry=True)
    assert caught.value.env["MALLOC_CONF"] == "dirty_decay_ms:1000"


@pytest.mark.parametrize("choice", ["auto", "jemalloc"])
def test_the_command_is_executed_again_once_only(
    plain: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], choice: str
) -> None:
    plain.setenv(allocator.EXEC_MARK, "1")  # executed already, and jemalloc did not load
    if choice == "auto":
        allocator.prepare(
            choice, entry=True
        )  # runs on the C library's malloc rather than looping, and says so
        assert capsys.readouterr().err == (
            "ticker: warning: libjemalloc.so.2 did not load; running on the C library's malloc\n"
        )
    else:
        with pytest.raises(allocator.AllocatorError, match="failed to load"):
            allocator.prepare(choice, entry=True)


def test_without_jemalloc_auto_keeps_pythons_allocator_and_jemalloc_says_what_to_install(
    plain: pytest.MonkeyPatch,
) -> None:
    plain.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    allocator.prepare("auto", entry=True)
    with pytest.raises(allocator.AllocatorError, match="libjemalloc2"):
        allocator.prepare("jemalloc", entry=True)


def test_pymalloc_and_the_operators_pythonmalloc_are_kept(plain: pytest.MonkeyPatch) -> None:
    allocator.prepare("pymalloc", entry=True)
    plain.setenv("PYTHONMALLOC", "pymalloc_debug")
    allocator.prepare("auto", entry=True)


def test_main_called_as_a_function_never_executes_anything(plain: pytest.MonkeyPatch) -> None:
    allocator.prepare("auto", entry=False)
    with pytest.raises(allocator.AllocatorError, match="the ticker command itself"):
        allocator.prepare("jemalloc", entry=False)


def test_under_python_e_nothing_is_executed(plain: pytest.MonkeyPatch) -> None:
    plain.setattr(allocator.sys, "flags", type("Flags", (), {"ignore_environment": 1})())
    allocator.prepare("auto", entry=True)  # PYTHONMALLOC would be ignored
    with pytest.raises(allocator.AllocatorError, match="-E or -I"):
        allocator.prepare("jemalloc", entry=True)


def test_a_failed_exec_keeps_the_allocator_under_auto(plain: pytest.MonkeyPatch) -> None:
    def refused(path: str, argv: list[str], env: dict[str, str]) -> None:
        raise PermissionError(13, "Permission denied")

    plain.setattr(allocator.os, "execve", refused)
    allocator.prepare("auto", entry=True)
    with pytest.raises(allocator.AllocatorError, match="could not start again"):
        allocator.prepare("jemalloc", entry=True)


def test_off_linux_auto_does_nothing(plain: pytest.MonkeyPatch) -> None:
    plain.setattr(allocator.sys, "platform", "darwin")
    allocator.prepare("auto", entry=True)


def test_the_cli_refuses_jemalloc_it_cannot_have_with_one_line(
    plain: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ticker.cli.main import main

    assert main(["serve", "--allocator", "jemalloc"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "ticker: error: --allocator jemalloc needs the ticker command itself (not main() in a program)"
    ]


class FakeFunction:
    """A C function found by ctypes: records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.argtypes: list[Any] = []
        self.restype: Any = None

    def __call__(self, *args: Any) -> int:
        self.calls.append(args)
        return 0


def test_the_allocator_is_told_by_pythonmalloc_and_the_symbols_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found: dict[str, FakeFunction] = {}
    monkeypatch.setattr(heap, "_symbol", found.get)
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    assert heap.allocator() == "pymalloc"
    monkeypatch.setenv("PYTHONMALLOC", "malloc")
    assert heap.allocator() == "malloc"
    found["mallctl"] = FakeFunction()
    assert heap.allocator() == "jemalloc"


def test_on_jemalloc_a_trim_purges_every_arena(monkeypatch: pytest.MonkeyPatch) -> None:
    mallctl, malloc_trim = FakeFunction(), FakeFunction()
    monkeypatch.setattr(heap, "_symbol", {"mallctl": mallctl, "malloc_trim": malloc_trim}.get)
    trim = heap._trimmer()
    assert trim is not None and trim(0) == 0
    assert mallctl.calls == [(b"arena.4096.purge", None, None, None, 0)] and not malloc_trim.calls
    monkeypatch.setattr(heap, "_symbol", {"malloc_trim": malloc_trim}.get)
    trim = heap._trimmer()
    assert trim is malloc_trim  # glibc without jemalloc
    monkeypatch.setattr(heap, "_symbol", {}.get)
    assert heap._trimmer() is None  # musl, macOS: nothing to trim with


def test_a_forked_child_starts_jemallocs_background_thread_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bool]] = []
    parent_ran_one = False

    def mallctl(name: bytes, oldp: Any, oldlenp: Any, newp: Any, newlen: int) -> int:
        if name == b"opt.background_thread":
            oldp._obj.value = parent_ran_one
        else:
            calls.append((name, newp._obj.value))
        return 0

    monkeypatch.setattr(heap, "_symbol", {"mallctl": mallctl}.get)
    heap.after_fork()
    assert calls == []
    parent_ran_one = True
    heap.after_fork()
    assert calls == [(b"background_thread", True)]
    monkeypatch.setattr(heap, "_symbol", {}.get)
    heap.after_fork()  # no jemalloc: nothing to do
