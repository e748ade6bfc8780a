"""``ticker watch`` as a user runs it: a subprocess printing JSON lines, and the rich table on a terminal."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios

import pytest

from tests.support.serverproc import ServerProcess
from tests.support.timing import eventually_sync, timeout

WATCH = [sys.executable, "-m", "ticker", "watch"]
Q_KEYS = {"s", "p", "t", "q"}


def test_json_lines(server: ServerProcess):
    proc = subprocess.run(
        [*WATCH, "aapl", "MSFT", "--url", server.ws_url, "--json", "--count", "30"],
        capture_output=True,
        text=True,
        timeout=timeout(30),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 30
    last: dict[str, int] = {}
    for line in lines:
        q = json.loads(line)
        assert Q_KEYS <= q.keys() <= Q_KEYS | {"b", "a", "v", "c", "cp"}
        assert q["s"] in {"AAPL", "MSFT"} and isinstance(q["t"], int) and isinstance(q["v"], int)
        assert q["q"] > last.get(q["s"], 0)
        last[q["s"]] = q["q"]
    assert set(last) == {"AAPL", "MSFT"}


def test_json_lines_are_flushed_one_by_one_and_a_closed_pipe_ends_quietly(server: ServerProcess):
    proc = subprocess.Popen(
        [*WATCH, "NVDA", "--url", server.ws_url, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = proc.stdout.readline()  # arrives while the process runs on: not held in a buffer
        assert json.loads(first)["s"] == "NVDA"
        proc.stdout.close()  # like `| head -1`
        assert proc.wait(timeout(15)) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_json_lines_end_with_status_0_on_ctrl_c_or_sigterm(server: ServerProcess, sig: signal.Signals):
    # SIGINT comes in ignored here, as in a script's background job: the command must still stop on it.
    proc = subprocess.Popen(
        [*WATCH, "NVDA", "--url", server.ws_url, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        assert json.loads(proc.stdout.readline())["s"] == "NVDA"  # running, subscribed and printing
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=timeout(15))
        assert proc.returncode == 0 and "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_unreachable_server_and_bad_symbol():
    proc = subprocess.run(
        [*WATCH, "AAPL", "--url", "ws://127.0.0.1:9/ws", "--json", "--connect-timeout", "0.5"],
        capture_output=True,
        text=True,
        timeout=timeout(30),
    )
    assert proc.returncode == 1 and "no connection to ws://127.0.0.1:9/ws" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    proc = subprocess.run([*WATCH, "BAD$"], capture_output=True, text=True, timeout=timeout(30))
    assert proc.returncode == 2 and "invalid symbol 'BAD$'" in proc.stderr


def test_table_on_a_terminal(server: ServerProcess):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "TERM")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [*WATCH, "AAPL", "MSFT", "--url", server.ws_url],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    out = b""

    def drained() -> bool:
        """Read what is there (waiting briefly); True once the terminal is closed (every writer has exited)."""
        nonlocal out
        if not select.select([master], [], [], 0.05)[0]:
            return False
        try:
            chunk = os.read(master, 65536)
        except OSError:
            return True
        out += chunk
        return not chunk

    def redrawn() -> bool:
        """Read what the terminal shows next; True after a couple of redraws with both rows priced."""
        nonlocal out
        try:
            out += os.read(master, 65536)
        except OSError:
            return True  # the terminal closed: nothing more to read
        return out.count(b"MSFT") >= 3 and bool(re.search(rb"AAPL.*?\d{3}\.\d\d", out))

    try:
        with contextlib.suppress(AssertionError):  # the checks below say what is missing
            eventually_sync(redrawn, 15, "a couple of redraws", interval=0)
        proc.send_signal(signal.SIGINT)
        # Keep reading while it shuts down, as a terminal does: a full pty would block its last redraws.
        eventually_sync(lambda: drained() and proc.poll() is not None, 10, "ticker watch to exit", interval=0)
        status = proc.wait(timeout(1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = out.decode(errors="replace")
    assert status == 0, text[-2000:]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "ticker watch" in plain and "connected" in plain
    assert re.search(r"AAPL\s*│\s*\d{3}\.\d\d", plain), plain[-2000:]
    assert re.search(r"MSFT\s*│\s*\d{3}\.\d\d", plain)
    assert "\x1b[" in text  # coloured and redrawn in place with terminal control codes
    assert re.search(r"\x1b\[3[12]m", text)  # green or red prices
    assert "Traceback" not in plain
