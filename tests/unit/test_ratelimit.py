"""Token bucket, Retry-After parsing and the throttled log (pure, on a fake clock)."""

from __future__ import annotations

import asyncio
import logging
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from feeds.credentials import secret
from feeds.ratelimit import MAX_RETRY_AFTER, ThrottledLog, retry_after, wait_for_token
from tests.support.clock import ManualClock
from ticker.tokenbucket import TokenBucket


def test_bucket_allows_rate_times_window_plus_capacity() -> None:
    clock = ManualClock()
    bucket = TokenBucket(rate=5.0, burst=2.0, now=clock())
    taken = 0
    for _ in range(1000):  # 10 s in steps of 10 ms, taking whenever allowed
        while bucket.take(clock()):
            taken += 1
        clock.now += 0.01
    assert taken in (51, 52)  # 5/s x 10 s + the initial burst of 2 (give or take the last step)


def test_bucket_refill_and_validation() -> None:
    clock = ManualClock()
    bucket = TokenBucket(rate=2.0, burst=1.0, now=clock())
    assert bucket.take(clock()) and not bucket.take(clock())
    clock.now += 0.25  # half a token: the next one is 0.5 s after the first
    assert not bucket.take(clock())
    clock.now += 0.25
    assert bucket.take(clock())
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1.0, now=0.0)
    with pytest.raises(ValueError):
        TokenBucket(rate=1.0, burst=0.5, now=0.0)


def test_reservations_queue_up_behind_each_other() -> None:
    clock = ManualClock()
    bucket = TokenBucket(rate=4.0, burst=1.0, now=clock())
    assert [bucket.reserve(clock()) for _ in range(3)] == [0.0, pytest.approx(0.25), pytest.approx(0.5)]
    clock.now += 0.5  # the reserved tokens are due now: the next waits a full interval
    assert bucket.reserve(clock()) == pytest.approx(0.25)
    assert not bucket.take(clock())


async def test_wait_for_token_sleeps_until_the_reserved_token_is_due(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock()
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)
        clock.now += delay

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    bucket = TokenBucket(rate=2.0, burst=1.0, now=clock())
    for _ in range(3):
        await wait_for_token(bucket, clock)
    assert slept == [pytest.approx(0.5), pytest.approx(0.5)]  # the first token was there


def test_retry_after_forms() -> None:
    assert retry_after("3") == 3.0
    assert retry_after(" 1.5 ") == 1.5
    assert retry_after("-4") == 0.0
    assert retry_after("999999") == MAX_RETRY_AFTER
    assert retry_after("nan") is None and retry_after("soon") is None and retry_after(None) is None
    when = retry_after(formatdate(time.time() + 30, usegmt=True))
    assert when is not None and 28 <= when <= 30


def test_throttled_log_speaks_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    tlog = ThrottledLog(logging.getLogger("t"), interval=3600)
    with caplog.at_level(logging.WARNING):
        for i in range(5):
            tlog.warning("malformed", "bad body %d", i)
        tlog.warning("network", "down")
    assert [r.getMessage() for r in caplog.records] == ["bad body 0", "down"]


def test_secret_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("X_TOKEN", raising=False)
    monkeypatch.delenv("X_TOKEN_FILE", raising=False)
    assert secret("X_TOKEN") is None
    (tmp_path / "tok").write_text("s3cret\n")
    monkeypatch.setenv("X_TOKEN_FILE", str(tmp_path / "tok"))
    assert secret("X_TOKEN") == "s3cret"
    monkeypatch.setenv("X_TOKEN", "env-wins")
    assert secret("X_TOKEN") == "env-wins"
