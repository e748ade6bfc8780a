"""Token bucket, Retry-After parsing and the throttled log (pure, on a fake clock)."""

from __future__ import annotations

import logging
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from feeds.credentials import secret
from feeds.ratelimit import MAX_RETRY_AFTER, ThrottledLog, TokenBucket, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_rate_times_window_plus_capacity() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=5.0, capacity=2.0, clock=clock)
    taken = 0
    for _ in range(1000):  # 10 s in steps of 10 ms, taking whenever allowed
        while bucket.try_take():
            taken += 1
        clock.now += 0.01
    assert taken in (51, 52)  # 5/s x 10 s + the initial burst of 2 (give or take the last step)


def test_bucket_delay_and_validation() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, clock=clock)
    assert bucket.try_take() and not bucket.try_take()
    assert bucket.delay() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.try_take()
    with pytest.raises(ValueError):
        TokenBucket(rate=0)


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
