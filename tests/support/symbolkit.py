"""Symbols in tests: small recordings for ``ticker serve --feed replay --replay-file``, and whether a
server's symbol directory has loaded."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from feeds.recording.format import write_all
from tests.support.timing import timeout
from ticker.quote import Quote


def write_recording(path: Path, symbols: Sequence[str], seconds: float, step_ms: int = 100) -> Path:
    """A recording of ``symbols`` that lasts ``seconds`` when replayed at speed 1: one quote of each
    symbol every ``step_ms`` milliseconds, prices 100, 101, ... (``feeds: ["test"]``). Returns ``path``."""
    t0 = int(time.time() * 1000)
    records = [
        (t0 + i * step_ms, Quote(sym, 100.0 + i, t0 + i * step_ms))
        for i in range(max(1, int(seconds * 1000 / step_ms)))
        for sym in symbols
    ]
    write_all(path, ["test"], records)
    return path


def knows(base_url: str, symbol: str) -> bool:
    """True when the server's directory has ``symbol`` (``GET /api/symbols/SYMBOL`` answers 200): once it has
    loaded, an unknown symbol is refused at once rather than accepted as ``pending``."""
    try:
        with urllib.request.urlopen(f"{base_url}/api/symbols/{symbol}", timeout=timeout(5)) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError:
        return False
