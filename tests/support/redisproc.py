"""A real ``redis-server`` on an ephemeral port for tests: start, kill, restart on the same port."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

import orjson
import pytest
import redis
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.support.serverproc import ServerProcess, TickerProcess


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_path() -> str:
    """The redis-server binary, or skip when the system package is missing (``make test`` installs it)."""
    path = shutil.which("redis-server")
    if path is None:
        pytest.skip("redis-server is not installed (.ci/system-deps.sh installs it)")
    return path


class RedisProcess:
    """``redis-server --port P --save '' --appendonly no``: no persistence, so a restart loses every key."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = tempfile.mkdtemp(prefix="ticker-redis-")

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisProcess:
        """Start and wait until it answers PING."""
        cmd = [
            redis_server_path(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.dir,
            "--loglevel",
            "warning",
        ]
        deadline = time.monotonic() + timeout
        while True:  # the port may linger briefly after a kill: retry the bind
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ping(min(deadline, time.monotonic() + 3.0)):
                return self
            self.proc.kill()
            self.proc.wait()
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.2)

    def _wait_ping(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                return False
            try:
                if self.command("PING") is True:
                    return True
            except (OSError, redis.RedisError):
                pass
            time.sleep(0.05)
        return False

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self, down_for: float = 0.0) -> None:
        """Kill, stay down ``down_for`` seconds, start again on the same port (empty)."""
        self.kill()
        time.sleep(down_for)
        self.start()

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self) -> redis.Redis:
        """A synchronous redis-py client (decoded replies) for inspecting the server."""
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=2)

    def command(self, *args: str) -> Any:
        """Run one command over a fresh connection and return the decoded reply."""
        with self.client() as c:
            return c.execute_command(*args)

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class FeedProcess(TickerProcess):
    """``python -m ticker feed ARGS`` (the publisher) in a subprocess, with its log kept."""

    command = "feed"

    def __init__(self, args: list[str]) -> None:
        super().__init__(args)
        self.metrics_port = 0

    def _on_line(self, line: str) -> bool:
        m = re.search(r"metrics listening on http://[^:]+:(\d+)", line)
        if m:
            self.metrics_port = int(m.group(1))
        return "ticker feed running" in line


class Recorder:
    """Reads every message of a WebSocket client in the background, with its arrival time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.msgs: list[tuple[float, dict[str, Any]]] = []
        self.close_code: int | None = None
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            async for raw in self.ws:
                self.msgs.append((time.monotonic(), orjson.loads(raw)))
        except ConnectionClosed:
            pass
        self.closed = True
        self.close_code = self.ws.close_code

    def since(self, t: float, kind: str) -> list[dict[str, Any]]:
        """Messages of ``kind`` received after monotonic time ``t``."""
        return [m for at, m in self.msgs if at > t and m["type"] == kind]

    def entries(self, kind: str = "quotes", since: float = 0.0) -> list[dict[str, Any]]:
        """Every Q entry of ``kind`` messages received after ``since``."""
        return [e for m in self.since(since, kind) for e in m["data"]]

    async def wait(self, pred: Any, timeout: float = 5.0) -> None:
        """Wait until ``pred()`` is truthy; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.02)


def publisher(r: RedisProcess, *extra: str) -> FeedProcess:
    """A `ticker feed` of the simulated market (seed 1, 20 ticks/s) publishing to ``r``."""
    sim = ["--feed", "simulated", "--seed", "1", "--sim-rate", "20"]
    return FeedProcess(["--broker", r.url, *sim, "--log-level", "info", *extra])


def node(r: RedisProcess, *extra: str) -> ServerProcess:
    """An edge node (`ticker serve --broker`) reading from ``r``."""
    return ServerProcess(["--broker", r.url, "--feed", "none", "--log-level", "info", *extra])
