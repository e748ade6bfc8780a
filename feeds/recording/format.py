"""The recording file format shared by ``ticker record`` and the ``replay`` feed (blocking file I/O).

JSON Lines, UTF-8, gzip-compressed when the name ends in ``.gz`` (detected by content on
reading). The first line is a header, every other line one normalized quote::

    {"format": "ticker-quotes", "version": 1, "created": "2026-11-21T21:40:00Z", "feeds": ["simulated"]}
    {"r": 1763761200123, "s": "AAPL", "p": 228.51, "b": 228.505, "a": 228.515, "v": 1200, "c": 0.01,
     "cp": 0.0044, "o": 227.9, "h": 228.7, "l": 227.8, "pc": 228.5, "t": 1763761200120}

Quote lines carry the wire protocol's Q fields (``s p b a v c cp o h l pc vw t``, optional ones
left out, no ``q``: sequence numbers belong to the server that serves them) and ``r``, the epoch
milliseconds at which the recorder received the quote; replay spaces quotes by ``r`` (``t`` is the
provider's own time and may repeat or go back). The day statistics (``o h l vw``, and ``pc``) are
what the feed supplied; recordings made before they existed lack them and replay as they did.
"""

from __future__ import annotations

import gzip
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import orjson

from feeds.errors import RecordingError
from ticker.quote import Quote, decode_entry, encode_entry

FORMAT = "ticker-quotes"
VERSION = 1
MAX_LINE = 64 * 1024  # bytes; a longer line is malformed (and not kept in memory whole)


def encode(quote: Quote, received_ms: int) -> bytes:
    """One quote line (with its trailing newline): ``r``, then the Q entry without ``q``."""
    return b'{"r":%d,' % received_ms + encode_entry(quote)[1:] + b"\n"


def header(feeds: list[str], symbols: list[str] | None = None) -> bytes:
    """The header line naming format, version, creation time, feeds and (optionally) requested symbols."""
    h: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "feeds": feeds,
    }
    if symbols:
        h["symbols"] = symbols
    return orjson.dumps(h) + b"\n"


def decode(line: bytes) -> tuple[int, Quote]:
    """Parse one quote line into ``(received_ms, quote)``; raises ``ValueError`` if malformed."""
    d = orjson.loads(line)
    quote = decode_entry(d, sequenced=False)
    r = d.get("r", quote.ts_ms)
    if type(r) is not int:
        raise ValueError(f"field 'r': expected epoch milliseconds, got {type(r).__name__}")
    return r, quote


def open_write(path: str | Path) -> IO[bytes]:
    """Open ``path`` for writing a recording (gzip when it ends in ``.gz``)."""
    p = Path(path)
    if p.suffix == ".gz":
        return cast(IO[bytes], gzip.open(p, "wb", compresslevel=6))
    return open(p, "wb")


def read_header(fh: IO[bytes]) -> dict[str, Any]:
    """Read and check the header line; raises :class:`RecordingError` for anything but a v1 recording."""
    try:
        line = fh.readline(MAX_LINE)
        h = orjson.loads(line)
    except (OSError, EOFError, ValueError) as exc:
        raise RecordingError(f"not a ticker recording (unreadable header: {exc})") from None
    if not isinstance(h, dict) or h.get("format") != FORMAT:
        raise RecordingError(f"not a ticker recording (the first line must name format {FORMAT!r})")
    if h.get("version") != VERSION:
        raise RecordingError(
            f"unsupported recording version {h.get('version')!r} (this ticker reads {VERSION})"
        )
    return h


@dataclass
class Summary:
    """What a scan of a whole recording found."""

    header: dict[str, Any]
    symbols: list[str] = field(default_factory=list)
    count: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    malformed: int = 0

    @property
    def mean_gap_ms(self) -> float:
        """Mean time between successive quotes (0 for fewer than two)."""
        if self.count < 2 or self.first_ms is None or self.last_ms is None:
            return 0.0
        return max(0.0, (self.last_ms - self.first_ms) / (self.count - 1))


class Reader:
    """Reads a recording in batches: ``(received_ms, quote)`` pairs and a count of malformed lines."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._raw = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise RecordingError(f"cannot open recording {str(path)!r}: {exc.strerror or exc}") from None
        self._fh: IO[bytes] = self._raw
        if self._raw.peek(2)[:2] == b"\x1f\x8b":
            self._fh = cast(IO[bytes], gzip.GzipFile(fileobj=self._raw, mode="rb"))
        self.line_no = 1
        try:
            self.header = read_header(self._fh)
        except RecordingError:
            self.close()
            raise

    def read_batch(self, n: int = 1000) -> tuple[list[tuple[int, Quote]], list[tuple[int, str]]]:
        """Up to ``n`` quotes and the ``(line number, reason)`` of malformed lines met; empty at the end."""
        out: list[tuple[int, Quote]] = []
        bad: list[tuple[int, str]] = []
        while len(out) < n:
            try:
                line = self._fh.readline(MAX_LINE)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:  # a truncated or corrupt gzip stream
                bad.append((self.line_no + 1, f"unreadable: {exc}"))
                break
            if not line:
                break
            self.line_no += 1
            if len(line) >= MAX_LINE and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # skip the rest of an over-long line
                    line = self._fh.readline(MAX_LINE)
                bad.append((self.line_no, "line too long"))
                continue
            if not line.strip():
                continue
            try:
                out.append(decode(line))
            except ValueError as exc:
                bad.append((self.line_no, str(exc)))
        return out, bad

    def __iter__(self) -> Iterator[tuple[int, Quote]]:
        while True:
            batch, _ = self.read_batch()
            if not batch:
                return
            yield from batch

    def close(self) -> None:
        if self._fh is not self._raw:
            self._fh.close()
        self._raw.close()


def scan(path: str | Path) -> Summary:
    """Read a whole recording once: its header, symbols (in order of appearance), count and time span."""
    reader = Reader(path)
    try:
        summary = Summary(reader.header)
        seen: dict[str, None] = {}
        while True:
            batch, bad = reader.read_batch(5000)
            summary.malformed += len(bad)
            if not batch:
                break
            for r, q in batch:
                seen.setdefault(q.symbol, None)
                summary.count += 1
                if summary.first_ms is None:
                    summary.first_ms = r
                summary.last_ms = r
        summary.symbols = list(seen)
        return summary
    finally:
        reader.close()


def write_all(path: str | Path, feeds: list[str], records: list[tuple[int, Quote]]) -> None:
    """Write a complete recording at once (for tools and tests)."""
    buf = io.BytesIO()
    buf.write(header(feeds))
    for r, q in records:
        buf.write(encode(q, r))
    with open_write(path) as fh:
        fh.write(buf.getvalue())
