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


def test_a_burst_is_collected_once_it_is_over_and_trimmed_after() -> None:
    after = heap.Aftermath()
    per_second = [heap.COLLECT_AFTER] * 5  # a burst of closes, second after second
    assert [after.tick(n) for n in per_second] == [
        (False, False),
        (False, False),
        (False, False),
        (False, True),
        (False, False),
    ]
    # the trims came at TRIM_AFTER let go; no collection while the burst goes on
    quiet = [after.tick(0) for _ in range(heap.QUIET_SECONDS)]
    assert quiet[:-1] == [(False, False)] * (heap.QUIET_SECONDS - 1)
    assert quiet[-1] == (True, True)  # over: one collection, and a trim for what was let go since the last
    assert [after.tick(0) for _ in range(10)] == [(False, False)] * 10  # once


def test_a_trickle_of_closes_never_costs_a_collection() -> None:
    after = heap.Aftermath()
    ticks = [after.tick(heap.CONNECTION_BYTES) for _ in range(150)]  # one connection a second
    assert not any(collect for collect, _ in ticks[: heap.COLLECT_AFTER // heap.CONNECTION_BYTES - 1])
    assert sum(collect for collect, _ in ticks) <= 1  # at most one per COLLECT_AFTER let go


def test_a_collection_finds_the_cycles_a_closed_connection_leaves() -> None:
    class Handler:
        def __init__(self) -> None:
            self.stream = {"owner": self}  # a reference cycle, as Tornado's handler and stream make

    gc_was = heap.gc.isenabled()
    heap.gc.disable()
    try:
        for _ in range(100):
            Handler()
        assert heap.collect() >= 200
    finally:
        if gc_was:
            heap.gc.enable()


def test_no_collection_while_the_connections_left_open_hold_more_than_went() -> None:
    after = heap.Aftermath()
    went = 10 * heap.COLLECT_AFTER
    after.tick(went, live=20 * heap.COLLECT_AFTER)  # an attack holds 20 of its 30 shares open
    held = [after.tick(0, live=20 * heap.COLLECT_AFTER) for _ in range(heap.QUIET_SECONDS + 5)]
    assert not any(collect for collect, _ in held)  # a collection now would walk every open connection
    after.tick(20 * heap.COLLECT_AFTER, live=0)  # they went
    gone = [after.tick(0, live=0) for _ in range(heap.QUIET_SECONDS)]
    assert [collect for collect, _ in gone] == [False] * (heap.QUIET_SECONDS - 1) + [True]
