"""Memory given back after connections go (ticker/server/heap.py), and shared while they are open."""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Callable
from typing import ClassVar

import pytest

from ticker.server import heap
from ticker.symbols import normalize_symbols, valid_symbol


class FakeTimer:
    """``threading.Timer`` that the test fires by hand."""

    made: ClassVar[list[FakeTimer]] = []

    def __init__(self, interval: float, fn: Callable[[int], int], args: tuple[int]) -> None:
        self.interval, self.fn, self.args = interval, fn, args
        self.daemon = self.started = self.cancelled = False
        self.made.append(self)

    def start(self) -> None:
        self.started = True

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        self.fn(*self.args)


def test_trim_releases_the_heap_now_and_once_more_after_the_last_call(monkeypatch):
    calls: list[int] = []

    def fake_trim(pad: int) -> int:
        calls.append(pad)
        return 1

    monkeypatch.setattr(heap, "_TRIM", fake_trim)
    monkeypatch.setattr(heap, "_settle", None)
    monkeypatch.setattr(heap.threading, "Timer", FakeTimer)
    FakeTimer.made = []
    assert heap.trim() is True and calls == [0]
    first = FakeTimer.made[0]
    assert first.interval == heap.SETTLE and first.daemon and first.started  # never holds up the exit
    assert heap.trim() is True and calls == [0, 0]
    second = FakeTimer.made[1]
    assert first.cancelled and not second.cancelled  # SETTLE seconds after the last call, once
    second.fire()
    assert calls == [0, 0, 0]
    assert heap.trim(settle=0) is True and calls == [0, 0, 0, 0] and len(FakeTimer.made) == 2


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_the_real_trim_is_found_and_runs():
    assert heap._TRIM is not None and getattr(heap._TRIM, "restype", None) is ctypes.c_int
    assert heap.trim(settle=0) is True


def test_without_a_trim_nothing_happens(monkeypatch):
    monkeypatch.setattr(heap, "_TRIM", None)
    assert heap.trim() is False


def test_every_connection_shares_one_string_per_symbol():
    # 1,000 connections of 500 symbols would otherwise hold 500,000 strings (about 32 MB of small objects)
    a = valid_symbol("".join(["aa", "pl"]))
    b = valid_symbol(" AAPL\t")
    assert a == "AAPL" and a is b
    assert normalize_symbols(["msft", "".join(["MS", "FT"])]) == ["MSFT"]
    assert normalize_symbols(["msft"])[0] is valid_symbol("MSFT ")
