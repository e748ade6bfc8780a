"""The log line formats of ``--log-format``: text and JSON, naming the pid and the worker."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from collections.abc import Iterator

import orjson
import pytest

from ticker.server import logs


@pytest.fixture(autouse=True)
def no_worker() -> Iterator[None]:
    logs.set_worker(None)
    yield
    logs.set_worker(None)


def _record(
    msg: str = "carrying %d symbols", args: tuple[object, ...] = (3,), **kw: object
) -> logging.LogRecord:
    rec = logging.LogRecord("ticker.publisher", logging.WARNING, __file__, 1, msg, args, None)
    rec.__dict__.update(kw)
    return rec


def test_json_line_has_exactly_the_documented_fields() -> None:
    rec = _record(password="hunter2", token="abc")  # extra values are never written
    line = logs.JsonLogFormatter().format(rec)
    assert "\n" not in line and "hunter2" not in line and "abc" not in line
    obj = orjson.loads(line)
    assert set(obj) == {"time", "level", "logger", "message", "pid", "worker"}
    assert obj["level"] == "WARNING" and obj["logger"] == "ticker.publisher"
    assert obj["message"] == "carrying 3 symbols" and obj["pid"] == os.getpid() and obj["worker"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["time"])


def test_json_line_carries_the_worker_and_the_exception_on_one_line() -> None:
    logs.set_worker(2)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = _record(exc_info=sys.exc_info())
    line = logs.JsonLogFormatter().format(rec)
    obj = orjson.loads(line)
    assert "\n" not in line and obj["worker"] == 2
    assert obj["exception"].startswith("Traceback") and obj["exception"].endswith("RuntimeError: boom")


def test_json_line_survives_an_undecodable_message() -> None:
    obj = orjson.loads(logs.JsonLogFormatter().format(_record("bad %s", ("a\udcff",))))
    assert obj["message"] == "bad a\\udcff"


def test_text_line_names_pid_and_worker() -> None:
    fmt = logs.TextLogFormatter()
    assert f" [{os.getpid()}] WARNING ticker.publisher: carrying 3 symbols" in fmt.format(_record())
    logs.set_worker(1)
    assert f" [{os.getpid()} w1] WARNING ticker.publisher: " in fmt.format(_record())


def test_configure_writes_json_lines_to_the_stream() -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers[:] = []
    out = io.StringIO()
    try:
        logs.configure("info", "json", out)
        logging.getLogger("ticker.test").info("hello %s", "there")
        logging.getLogger("ticker.test").debug("not at info")
    finally:
        root.handlers[:], root.level = saved, level
    (line,) = out.getvalue().splitlines()
    assert orjson.loads(line)["message"] == "hello there"
    with pytest.raises(ValueError):
        logs.formatter("xml")


def test_the_feed_process_of_workers_says_feed() -> None:
    logs.set_worker("feed")
    assert f" [{os.getpid()} feed] WARNING ticker.publisher: " in logs.TextLogFormatter().format(_record())
    assert orjson.loads(logs.JsonLogFormatter().format(_record()))["worker"] == "feed"
