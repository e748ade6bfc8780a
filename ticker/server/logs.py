"""The log lines of a ticker process (``serve``, ``feed``, ``record``): text or JSON (``--log-format``).

Every line names the process id and, in a ``--workers`` child, the worker index (``feed`` in the feed
process), so the lines of several workers sharing one stderr (or journal) can be told apart:

- text: ``2026-12-01 02:28:43,123 [4242 w1] INFO ticker: message`` (``[4242 feed]`` in the feed process,
  ``[4242]`` outside workers), a traceback on the following lines;
- json: one object per line, ``{"time","level","logger","message","pid","worker"}`` and ``"exception"``
  (the formatted traceback) when there is one. ``worker`` is the index, ``"feed"``, or null outside workers.

Only these fields are written: never a record's arguments or ``extra`` values, so nothing reaches the log
but the message its logger formatted (secrets are redacted before that: ``ticker.server.peers``).
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

import orjson

FORMATS = ("text", "json")

_worker: int | str | None = None


def set_worker(index: int | str | None) -> None:
    """Name this process worker ``index`` in its log lines from now on (``"feed"``: the feed process of
    ``--workers``; None: not a worker)."""
    global _worker
    _worker = index


def current_worker() -> int | str | None:
    """The worker index this process logs under, or None."""
    return _worker


def _pid(record: logging.LogRecord) -> int:
    return record.process if record.process is not None else os.getpid()


class TextLogFormatter(logging.Formatter):
    """``TIME [PID wN] LEVEL LOGGER: MESSAGE``; the traceback, if any, on the following lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s [%(ticker_tag)s] %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        pid = _pid(record)
        w = _worker
        record.ticker_tag = str(pid) if w is None else f"{pid} w{w}" if isinstance(w, int) else f"{pid} {w}"
        return super().format(record)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601, ms), level, logger, message, pid, worker[, exception]."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        obj: dict[str, object] = {
            "time": when.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": _pid(record),
            "worker": _worker,
        }
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            obj["exception"] = record.exc_text
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(obj).decode()
        except orjson.JSONEncodeError:  # a lone surrogate (undecodable input): escape it, keep the line
            safe = {k: v.encode("utf-8", "backslashreplace").decode() if isinstance(v, str) else v
                    for k, v in obj.items()}  # fmt: skip
            return orjson.dumps(safe).decode()


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of ``--log-format`` ``fmt`` (``text`` or ``json``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}")
    return JsonLogFormatter() if fmt == "json" else TextLogFormatter()


def configure(level: str, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every log record of ``level`` and above to ``stream`` (stderr) in format ``fmt``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
