"""A real ``redis-server`` on an ephemeral port for tests (start, kill, start again on the same port), and
the ``ticker feed`` publisher and edge nodes around it."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from typing import Any

import pytest
import redis

from tests.support.serverproc import ServerProcess, TickerProcess
from tests.support.system import free_port
from tests.support.timing import eventually_sync, timeout


def redis_server_path() -> str:
    """The redis-server binary, or skip when the system package is missing (``make test`` installs it)."""
    path = shutil.which("redis-server")
    if path is None:
        pytest.skip("redis-server is not installed (.ci/system-deps.sh installs it)")
    return path


def local_client(port: int) -> redis.Redis:
    """A synchronous redis-py client (decoded replies, no redirections followed) of the server on ``port``."""
    return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=timeout(2))


def local_command(port: int, *args: Any) -> Any:
    """Run one command on the server on ``port`` over a fresh connection; the decoded reply."""
    with local_client(port) as c:
        return c.execute_command(*args)


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

    def start(self, within: float = 10.0) -> RedisProcess:
        """Start and wait (``within`` seconds, scaled) until it answers PING."""
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
        deadline = time.monotonic() + timeout(within)
        while True:  # the port may linger briefly after a kill: start again until it binds
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                # Ready once it answers PING; a process that exited (port still taken) ends the wait.
                if eventually_sync(self._answers_or_exited, 3.0, "redis-server to answer PING") == "up":
                    return self
            except AssertionError:
                pass
            self.proc.kill()
            self.proc.wait()
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.2)  # pacing between attempts, not a wait for an event

    def _answers_or_exited(self) -> str | None:
        """``"up"`` once the server answers PING, ``"exited"`` if the process ended, else None."""
        if self.proc is not None and self.proc.poll() is not None:
            return "exited"
        try:
            return "up" if self.command("PING") is True else None
        except (OSError, redis.RedisError):
            return None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout(5))

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self) -> redis.Redis:
        """A synchronous redis-py client (decoded replies) for inspecting the server."""
        return local_client(self.port)

    def command(self, *args: str) -> Any:
        """Run one command over a fresh connection and return the decoded reply."""
        return local_command(self.port, *args)

    def __enter__(self) -> RedisProcess:
        running = self.proc is not None and self.proc.poll() is None
        return self if running else self.start()  # ``with proc.start() as p`` starts it once

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


def publisher(r: RedisProcess, *extra: str) -> FeedProcess:
    """A `ticker feed` of the simulated market (seed 1, 20 ticks/s) publishing to ``r``."""
    sim = ["--feed", "simulated", "--seed", "1", "--sim-rate", "20"]
    return FeedProcess(["--broker", r.url, *sim, "--log-level", "info", *extra])


def node(r: RedisProcess, *extra: str) -> ServerProcess:
    """An edge node (`ticker serve --broker`) reading from ``r``."""
    return ServerProcess(["--broker", r.url, "--feed", "none", "--log-level", "info", *extra])
