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
    burst = 1_000 * heap.CONNECTION_BYTES  # connections closed a second
    ticks = [after.tick(burst, burst, 10 * heap.CONNECTION_BYTES) for _ in range(3)]
    assert [collect for collect, _ in ticks] == [False] * 3  # never while the burst goes on
    assert [trim for _, trim in ticks] == [True] * 3  # (each second let go more than TRIM_AFTER)
    quiet = [after.tick(0, 0, 10 * heap.CONNECTION_BYTES) for _ in range(heap.QUIET_SECONDS)]
    assert quiet == [(False, False)] * (heap.QUIET_SECONDS - 1) + [(True, False)]  # over: one collection
    assert [after.tick(0, 0, 10 * heap.CONNECTION_BYTES) for _ in range(100)] == [
        (False, False)
    ] * 100  # once


def test_a_collection_is_followed_by_a_trim_of_what_went_since_the_last() -> None:
    after = heap.Aftermath()
    after.tick(heap.COLLECT_AFTER, heap.COLLECT_AFTER, 0)  # under TRIM_AFTER: no trim yet
    quiet = [after.tick(0, 0, 0) for _ in range(heap.QUIET_SECONDS)]
    assert quiet[-1] == (True, True)


def test_unsent_bytes_let_go_are_trimmed_but_never_collected() -> None:
    after = heap.Aftermath()
    assert after.tick(heap.TRIM_AFTER, 0, 0) == (False, True)  # a slow reader's backlog: no objects
    assert [after.tick(0, 0, 0) for _ in range(heap.QUIET_SECONDS + 2)] == [(False, False)] * (
        heap.QUIET_SECONDS + 2
    )


def test_a_trim_waits_while_one_runs_and_is_not_lost() -> None:
    after = heap.Aftermath()
    assert after.tick(heap.TRIM_AFTER, 0, 0, can_trim=False) == (False, False)
    assert after.tick(0, 0, 0, can_trim=True) == (False, True)


def test_a_trickle_never_costs_a_collection() -> None:
    after = heap.Aftermath()
    ticks = [
        after.tick(heap.CONNECTION_BYTES, heap.CONNECTION_BYTES, 100 * heap.CONNECTION_BYTES)
        for _ in range(10_000)
    ]
    assert not any(collect for collect, _ in ticks)  # one close a second, however long


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


def test_no_collection_while_the_connections_left_open_weigh_more_than_what_went() -> None:
    after = heap.Aftermath()
    went, left = (
        2_000 * heap.CONNECTION_BYTES,
        4_000 * heap.CONNECTION_BYTES,
    )  # an attack holds two thirds open
    after.tick(went, went, left)
    held = [after.tick(0, 0, left) for _ in range(heap.QUIET_SECONDS + 5)]
    assert not any(collect for collect, _ in held)  # a collection now would walk every open connection
    after.tick(left, left, 0)  # they went
    gone = [after.tick(0, 0, 0) for _ in range(heap.QUIET_SECONDS)]
    assert [collect for collect, _ in gone] == [False] * (heap.QUIET_SECONDS - 1) + [True]
