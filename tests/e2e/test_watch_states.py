"""``ticker watch`` and symbol states, as a user runs it: unknown symbols named (status 2 when none is
left), each row's state in the table, and state changes as JSON lines beside unchanged quote lines."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.support.serverproc import ServerProcess
from tests.support.symbolkit import knows, write_recording
from tests.support.terminal import plain, run_on_terminal
from tests.support.timing import eventually_sync, timeout

WATCH = [sys.executable, "-m", "ticker", "watch"]
Q_KEYS = {"s", "p", "t", "q", "b", "a", "v", "c", "cp", "o", "h", "l", "pc", "vw"}


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A replay of AAPL and MSFT that ends after two seconds: both turn ``down``; its directory is the two."""
    recording = write_recording(tmp_path_factory.mktemp("rec") / "short.jsonl", ["AAPL", "MSFT"], seconds=2)
    with ServerProcess(
        ["--feed", "replay", "--replay-file", str(recording), "--log-level", "warning"]
    ) as srv:
        eventually_sync(lambda: knows(srv.url, "AAPL"), 15, "the replay's directory")
        yield srv


def watch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WATCH, *args], capture_output=True, text=True, timeout=timeout(30))


def test_watch_of_unknown_symbols_says_so_and_exits_2(replay: ServerProcess, server: ServerProcess):
    proc = watch("NVDA", "--url", replay.ws_url, "--json")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "ticker watch: No symbol NVDA." and proc.stdout == ""
    eventually_sync(lambda: knows(server.url, "AAPL"), 15, "the simulated market's directory")
    proc = watch("APPL", "--url", server.ws_url)
    assert proc.returncode == 2 and "No symbol APPL — did you mean AAPL (Apple Inc.)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_watch_goes_on_with_the_known_symbols_and_names_the_refused_ones(replay: ServerProcess):
    proc = watch("NVDA", "AAPL", "--url", replay.ws_url, "--json", "--count", "1")
    assert proc.returncode == 0, proc.stderr
    assert "No symbol NVDA. Watching AAPL." in proc.stderr
    assert json.loads(proc.stdout.splitlines()[0])["s"] == "AAPL"


def test_json_lines_carry_state_changes_and_quote_lines_stay_as_they_were(replay: ServerProcess):
    proc = subprocess.Popen(
        [*WATCH, "AAPL", "MSFT", "--url", replay.ws_url, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[dict[str, object]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:

        def both_down() -> bool:
            return {(x["s"], x["state"]) for x in lines if x.get("type") == "status"} >= {
                ("AAPL", "down"),
                ("MSFT", "down"),
            }

        eventually_sync(both_down, 20, "status lines saying AAPL and MSFT are down")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=timeout(15))
        assert proc.returncode == 0 and "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout(5))
    quotes = [x for x in lines if "type" not in x]
    statuses = [x for x in lines if "type" in x]
    assert {q["s"] for q in quotes} == {"AAPL", "MSFT"}  # the snapshot at least
    assert all({"s", "p", "t", "q"} <= q.keys() <= Q_KEYS for q in quotes)
    for st in statuses:
        assert st.keys() == {"type", "s", "state", "reason"} and st["type"] == "status"
        assert st["state"] != "down" or st["reason"]  # a state other than live says why


def test_the_table_shows_each_rows_state(replay: ServerProcess):
    def shown(text: str) -> bool:
        return bool(
            re.search(r"AAPL\s*│[^\n]*│\s*down\b", text) and re.search(r"MSFT\s*│[^\n]*│\s*down\b", text)
        )

    status, out = run_on_terminal([*WATCH, "AAPL", "MSFT", "--url", replay.ws_url], shown)
    text = plain(out)
    assert status == 0, text[-2000:]
    assert "State" in text and shown(text), text[-2000:]
    assert re.search(r"AAPL\s*│\s*\d{3}\.\d\d", text)  # the last value stays on show, dimmed
    assert "Traceback" not in text
