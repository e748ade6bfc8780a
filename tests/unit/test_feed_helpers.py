"""Pacing, log throttling and wire-value parsing used by the streaming adapters."""

from __future__ import annotations

import logging

import pytest

from feeds.credentials import FeedConfigError, require_env
from feeds.ratelimit import ThrottledLog
from feeds.streaming.link import redact_url
from feeds.wire import Malformed, book_fields, num, opt_num, rfc3339_ms, trade_fields


def test_throttled_log_keeps_the_level(caplog):
    tlog = ThrottledLog(logging.getLogger("t"), interval=3600)
    with caplog.at_level(logging.WARNING):
        tlog.log(logging.ERROR, "auth", "refused %s", "once")
        tlog.log(logging.ERROR, "auth", "refused %s", "twice")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.ERROR, "refused once")]


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


def test_trade_and_book_fields_of_the_shared_shape():
    assert trade_fields({"p": "187.5", "s": 100, "x": "V"}) == {"price": 187.5, "size": 100.0}
    assert trade_fields({"p": 12}) == {"price": 12.0, "size": 0.0}  # no size: 0
    assert book_fields({"bp": 187.4, "ap": "187.6", "bs": 3}) == {"bid": 187.4, "ask": 187.6}
    for bad_trade in ({"s": 1}, {"p": "nan", "s": 1}, {"p": 1, "s": None}, {"p": True}):
        with pytest.raises(Malformed):
            trade_fields(bad_trade)
    for bad_book in ({"bp": 1}, {"ap": 1}, {"bp": "x", "ap": 1}, {"bp": 1, "ap": float("inf")}):
        with pytest.raises(Malformed):
            book_fields(bad_book)


def test_redact_url_drops_tokens():
    assert redact_url("wss://ws.finnhub.io/?token=SECRET") == "wss://ws.finnhub.io/"
    assert "pw" not in redact_url("wss://user:pw@host/x?k=v")


def test_require_env_names_every_missing_variable(monkeypatch):
    monkeypatch.setenv("A_SET", "v")
    monkeypatch.delenv("B_MISSING", raising=False)
    assert require_env("f", "A_SET") == ["v"]
    with pytest.raises(FeedConfigError, match="B_MISSING"):
        require_env("f", "A_SET", "B_MISSING")


def test_require_env_reads_a_file_named_by_name_file(monkeypatch, tmp_path):
    (tmp_path / "key").write_text("from-file\n")
    monkeypatch.delenv("C_KEY", raising=False)
    monkeypatch.setenv("C_KEY_FILE", str(tmp_path / "key"))
    assert require_env("f", "C_KEY") == ["from-file"]
