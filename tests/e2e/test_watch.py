"""``ticker watch`` as a user runs it: a subprocess printing JSON lines, and the rich table on a terminal."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

from tests.support.serverproc import ServerProcess
from tests.support.terminal import plain, run_on_terminal
from tests.support.timing import timeout

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
        assert Q_KEYS <= q.keys() <= Q_KEYS | {"b", "a", "v", "c", "cp", "o", "h", "l", "pc", "vw"}
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
    def redrawn(shown: str) -> bool:
        """A couple of redraws with both rows priced."""
        return shown.count("MSFT") >= 3 and bool(re.search(r"AAPL.*?\d{3}\.\d\d", shown))

    status, text = run_on_terminal([*WATCH, "AAPL", "MSFT", "--url", server.ws_url], redrawn)
    assert status == 0, text[-2000:]
    shown = plain(text)
    assert "ticker watch" in shown and "connected" in shown
    assert re.search(r"AAPL\s*│\s*\d{3}\.\d\d", shown), shown[-2000:]
    assert re.search(r"MSFT\s*│\s*\d{3}\.\d\d", shown)
    assert "\x1b[" in text  # coloured and redrawn in place with terminal control codes
    assert re.search(r"\x1b\[3[12]m", text)  # green or red prices
    assert "Traceback" not in shown
