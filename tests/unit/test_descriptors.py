"""The descriptor budget's arithmetic and the accept guard's rules (ticker/server/descriptors.py)."""

from __future__ import annotations

import errno
import logging
import resource

import pytest

from ticker.server import descriptors
from ticker.server.descriptors import AcceptGuard, fit, raise_target, reason_of, reserve, watermark


def test_the_reserve_is_64_and_4_per_feed() -> None:
    assert reserve(0) == 64
    assert reserve(1) == 68
    assert reserve(3) == 76


@pytest.mark.parametrize(
    ("requested", "soft", "feeds", "effective"),
    [
        (50_000, 1024, 1, 956),  # the default under the common soft limit of 1,024
        (50_000, 128, 1, 60),
        (50_000, 1_048_576, 1, 50_000),  # fits: unchanged
        (500, 1024, 0, 500),
        (960, 1024, 0, 960),  # exactly fits
        (961, 1024, 0, 960),
        (50_000, 40, 2, 1),  # fewer descriptors than the reserve: one connection, not zero or less
        (50_000, None, 5, 50_000),  # unlimited
    ],
)
def test_max_connections_fits_beside_the_reserve(
    requested: int, soft: int | None, feeds: int, effective: int
) -> None:
    got = fit(requested, soft, feeds)
    assert got.effective == effective
    assert got.lowered is (effective < requested)
    assert got.reserve == reserve(feeds) and got.soft == soft and got.requested == requested


def test_the_watermark_keeps_the_last_descriptors_free_and_sits_above_the_effective_limit() -> None:
    assert watermark(1024) == 1024 - descriptors.KEEP_FREE
    assert watermark(None) is None
    assert watermark(4) == 1
    # every connection the budget allows, plus the process's own descriptors, stays below the watermark
    budget = fit(50_000, 1024, 1)
    mark = watermark(1024)
    assert mark is not None and budget.effective + descriptors.RESERVE_BASE - descriptors.KEEP_FREE <= mark


def test_the_soft_limit_is_raised_to_the_hard_one_never_lowered() -> None:
    inf = resource.RLIM_INFINITY
    assert raise_target(1024, 524_288) == 524_288
    assert raise_target(1024, 1024) == 1024
    assert raise_target(1024, inf) == descriptors.UNLIMITED_TARGET
    assert raise_target(inf, inf) == inf
    assert raise_target(4_000_000, inf) == 4_000_000


def test_size_to_descriptors_warns_once_with_both_numbers(monkeypatch, caplog) -> None:
    monkeypatch.setattr(descriptors, "raise_soft_limit", lambda: 128)
    with caplog.at_level(logging.INFO, "ticker"):
        got = descriptors.size_to_descriptors(50_000, 1)
        assert descriptors.size_to_descriptors(50, 1).effective == 50
    assert got.effective == 60
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "--max-connections 50000" in warnings[0] and "at most 60 connections" in warnings[0]
    assert "128 file descriptors" in warnings[0]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.EMFILE, "emfile"),
        (errno.ENFILE, "enfile"),
        (errno.ENOBUFS, "enobufs"),
        (errno.ENOMEM, "enomem"),
        (errno.EBADF, "other"),
        (errno.EINVAL, "other"),
        (errno.ECONNABORTED, None),
        (errno.EPROTO, None),
        (errno.ENETUNREACH, None),
    ],
)
def test_accept_errors_pause_unless_they_belong_to_one_pending_connection(
    code: int, reason: str | None
) -> None:
    assert reason_of(OSError(code, "x")) == reason


def test_the_pause_grows_from_100_ms_to_1_s_and_starts_again_after_an_accept() -> None:
    counted: list[str] = []
    guard = AcceptGuard(counted.append)
    delays = [guard.failed("emfile", float(i)) for i in range(6)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    guard.accepted()
    assert guard.failed("enfile", 10.0) == 0.1
    assert counted == ["emfile"] * 6 + ["enfile"]


def test_pauses_log_at_most_once_a_second_with_a_count(caplog) -> None:
    guard = AcceptGuard(lambda _reason: None, name="the listener")
    with caplog.at_level(logging.WARNING, "ticker"):
        for i in range(1000):  # 1,000 failures within 2.5 s
            guard.failed("emfile", i * 0.0025)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # at 0 s, 1 s and 2 s
    assert all(line.startswith("the listener: the process has no file descriptor left") for line in lines)
    assert "(1 such pauses" in lines[0] and "(400 such pauses" in lines[1]


def test_a_connection_on_a_descriptor_at_the_watermark_is_over() -> None:
    guard = AcceptGuard(lambda _reason: None, watermark=112)
    assert not guard.over(111)
    assert guard.over(112) and guard.over(127)
    assert not AcceptGuard(lambda _reason: None).over(1_000_000)  # the ops listener: no watermark
