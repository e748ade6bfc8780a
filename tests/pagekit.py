"""Helpers for driving the trader's page: a real ``ticker serve`` subprocess and Debian's Chromium.

Used by the browser tests, the screenshot script (docs/screenshot.py) and the page benchmark
(bench/web_page.py). Chromium comes from the system (``.ci/system-deps.sh`` installs it); Playwright
only drives it, so ``playwright install`` is never needed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_LISTENING = re.compile(r"listening on http://([^\s:/]+):(\d+)")


def chromium_path() -> str:
    """The system Chromium (``TICKER_CHROMIUM`` overrides); raises when it is missing."""
    path = os.environ.get("TICKER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("chromium is not installed: run `make system-deps` (apt-get install chromium)")
    return path


def launch_chromium(playwright: Any) -> Any:
    """A headless Chromium browser driven by ``playwright`` (a started ``sync_playwright()``)."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)


class TickerServer:
    """``ticker serve`` in a subprocess with the simulated feed; ``start()`` waits for its port."""

    def __init__(self, *extra: str) -> None:
        self.extra = list(extra)
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.log: deque[str] = deque(maxlen=200)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0, timeout: float = 15.0) -> TickerServer:
        """Start on ``port`` (0: an ephemeral one; a restart passes the previous port)."""
        cmd = [sys.executable, "-m", "ticker", "serve", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--log-level", "info", *self.extra]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        found = threading.Event()
        proc = self.proc

        def pump() -> None:  # keep reading so the server never blocks on a full stderr pipe
            assert proc.stderr is not None
            for line in proc.stderr:
                self.log.append(line.rstrip())
                m = _LISTENING.search(line)
                if m and not found.is_set():
                    self.port = int(m.group(2))
                    found.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("ticker serve did not start:\n" + "\n".join(self.log))
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (the server closes clients with 1001 and exits 0)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def restart(self) -> None:
        """Stop, then start again on the same port."""
        port = self.port
        self.stop()
        self.start(port)

    def __enter__(self) -> TickerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
