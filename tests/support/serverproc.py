"""Run real ``ticker`` processes for tests: a server on an ephemeral port, or a command to completion."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Self

from tests.support.system import rss_kib
from tests.support.timing import timeout

_LISTEN = re.compile(r"listening on http://[^:]+:(\d+)")


class ServerUrls:
    """The URLs of a test server listening on 127.0.0.1 at ``port`` (a subprocess or in-process)."""

    port: int

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT/ws``."""
        return f"ws://127.0.0.1:{self.port}/ws"


class TickerProcess:
    """``python -m ticker COMMAND ARGS`` in a subprocess, its log kept; ready once :meth:`_on_line` says so."""

    command = "serve"
    #: Run in the child before ``python`` starts (e.g. ``resource.setrlimit`` for a low ``ulimit -n``).
    preexec_fn: Callable[[], None] | None = None

    def __init__(
        self,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        cwd: str | None = None,
    ) -> None:
        self.args = list(args)
        self.python = python
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()

    def _argv(self) -> list[str]:
        return self.args

    def _on_line(self, line: str) -> bool:
        """Look at one log line; True once the process is ready."""
        raise NotImplementedError

    def start(self, within: float = 15.0) -> Self:
        """Start the process and wait (``within`` seconds, scaled) until it is ready; returns ``self``."""
        cmd = [self.python, "-m", "ticker", self.command, *self._argv()]
        self._ready.clear()
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
            cwd=self.cwd,
            preexec_fn=self.preexec_fn,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        if not self._ready.wait(timeout(within)):
            self.stop()
            raise RuntimeError(f"ticker {self.command} did not start:\n" + "".join(self.lines[-30:]))
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line)
            if not self._ready.is_set() and self._on_line(line):
                self._ready.set()

    def output(self) -> str:
        """Everything the server logged so far."""
        return "".join(self.lines)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the server."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, within: float = 10.0) -> int:
        """Wait (``within`` seconds, scaled) for exit and return the status."""
        assert self.proc is not None
        return self.proc.wait(timeout(within))

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 8 s (scaled); returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout(8))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout(5))

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout(5))

    def rss_kib(self) -> int:
        """Resident set size of the process in KiB (Linux /proc); fails once it is gone."""
        assert self.proc is not None
        kib = rss_kib([self.proc.pid])
        if not kib:
            raise RuntimeError(f"no VmRSS for pid {self.proc.pid}: the process is gone")
        return kib

    def __enter__(self) -> Self:
        running = self.proc is not None and self.proc.poll() is None
        return self if running else self.start()  # ``with proc.start() as p`` starts it once

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class ServerProcess(ServerUrls, TickerProcess):
    """``python -m ticker serve --port 0 ARGS``; ``port`` is known once it listens."""

    def __init__(
        self,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        port: int = 0,
        python: str = sys.executable,
        cwd: str | None = None,
    ) -> None:
        super().__init__(args, env, python, cwd)
        self.requested_port = port
        self.port = 0

    def _argv(self) -> list[str]:
        return ["--port", str(self.requested_port), *self.args]

    def _on_line(self, line: str) -> bool:
        m = _LISTEN.search(line)
        if m:
            self.port = int(m.group(1))
        return m is not None


def scrape(url: str) -> dict[str, float]:
    """Fetch ``/metrics`` and return {"name{labels}": value} for every sample."""
    with urllib.request.urlopen(url + "/metrics", timeout=timeout(5)) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


async def scrape_async(url: str) -> dict[str, float]:
    """:func:`scrape` off the event loop (which may be serving the very server scraped)."""
    return await asyncio.to_thread(scrape, url)


@contextlib.asynccontextmanager
async def serving(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[ServerProcess]:
    """A real ``ticker serve --port 0 ARGS`` process, started and stopped off the event loop."""
    srv = ServerProcess(["--host", "127.0.0.1", "--loop", "asyncio", *args], env=env)
    await asyncio.to_thread(srv.start, 20.0)
    try:
        yield srv
    finally:
        await asyncio.to_thread(srv.stop)


async def run_cli(*args: str, env: dict[str, str] | None = None, within: float = 30) -> tuple[int, str]:
    """Run ``python -m ticker ARGS`` to completion (``within`` seconds, scaled); returns (exit status, stderr).

    ``TICKER_*`` and provider variables of the caller's environment are left out, ``env`` is added.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKER_", "FINNHUB_"))}
    full_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ticker",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=full_env,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout(within))
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")
