"""Pacing, log throttling and wire-value parsing used by the streaming adapters."""

from __future__ import annotations

import logging
import time

import pytest

from feeds.credentials import FeedConfigError, require_env
from feeds.link import redact_url
from feeds.throttle import LogThrottle, RateLimiter
from feeds.wire import Malformed, num, opt_num, rfc3339_ms


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_rate_limiter_sliding_window():
    clock = Clock()
    rl = RateLimiter(3, 1.0, clock=clock)
    for _ in range(3):
        assert rl.delay() == 0
        rl._times.append(clock())
    assert rl.delay() == pytest.approx(1.0)
    clock.t += 0.4
    assert rl.delay() == pytest.approx(0.6)
    clock.t += 0.6
    assert rl.delay() == 0


async def test_rate_limiter_acquire_paces_real_time():
    rl = RateLimiter(2, 0.2)
    start = time.monotonic()
    for _ in range(5):
        await rl.acquire()
    assert time.monotonic() - start >= 0.39  # 5 sends at 2 per 0.2 s need two full windows


def test_log_throttle_logs_once_per_interval_with_the_held_count(caplog):
    clock = Clock()
    lt = LogThrottle(logging.getLogger("t"), interval=60, clock=clock)
    with caplog.at_level(logging.WARNING):
        assert lt.log(logging.WARNING, "malformed", "bad one")
        assert not lt.log(logging.WARNING, "malformed", "bad two")
        assert not lt.log(logging.WARNING, "malformed", "bad three")
        assert lt.log(logging.WARNING, "auth", "other kind")
        clock.t += 61
        assert lt.log(logging.WARNING, "malformed", "bad four")
    assert [r.getMessage() for r in caplog.records] == [
        "bad one",
        "other kind",
        "bad four (2 more like it since the last report)",
    ]


def test_numbers_from_json_or_decimal_strings():
    assert num("1285.22") == 1285.22 and num(7) == 7.0 and opt_num("") is None and opt_num(None) is None
    for bad in ("abc", "nan", "inf", True, None, [1]):
        with pytest.raises(Malformed):
            num(bad)


def test_rfc3339_with_nanoseconds_and_offsets():
    assert rfc3339_ms("2021-02-22T15:51:45.335689322Z") == 1614009105335
    assert rfc3339_ms("2021-02-22T15:51:45Z") == 1614009105000
    assert rfc3339_ms("2021-02-22T16:51:45.5+01:00") == 1614009105500
    for bad in ("2021-02-22", "yesterday", 5, "2021-13-40T00:00:00Z"):
        with pytest.raises(Malformed):
            rfc3339_ms(bad)


def test_redact_url_drops_tokens():
    assert redact_url("wss://ws.finnhub.io/?token=SECRET") == "wss://ws.finnhub.io/"
    assert "pw" not in redact_url("wss://user:pw@host/x?k=v")


def test_require_env_names_every_missing_variable(monkeypatch):
    monkeypatch.setenv("A_SET", "v")
    monkeypatch.delenv("B_MISSING", raising=False)
    assert require_env("f", "A_SET") == ["v"]
    with pytest.raises(FeedConfigError, match="B_MISSING"):
        require_env("f", "A_SET", "B_MISSING")
