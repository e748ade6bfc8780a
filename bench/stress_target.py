"""One server under attack in the stress suite: ``ticker serve``, its canary, and samplers of its resources.

A :class:`Target` starts the server (a :class:`~tests.support.serverproc.ServerProcess`, optionally under
a lower ``RLIMIT_NOFILE``), a canary (:mod:`bench.stress_canary`) and two sampler threads: one reads
``/proc`` every 0.25 s (RSS, open descriptors, CPU time), one asks ``/healthz`` (2 s timeout) and scrapes
``/metrics`` every second. :meth:`Target.window` turns what they saw between two instants into the
figures of one table row; :func:`log_kinds` counts the server's log lines per kind and second.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from bench.procs import run_wait_seconds
from tests.support.serverproc import ServerProcess, scrape
from tests.support.system import cpu_seconds, rss_kib
from tests.support.timing import timeout

ROOT = Path(__file__).resolve().parent.parent
_OPS = re.compile(r"metrics on http://[^:]+:(\d+)/metrics")
_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ (\w+) ([\w.]+): (.*)$")
_DIGITS = re.compile(r"\d+(\.\d+)?")
#: The metrics a row reports (summed over their labels unless a label is named).
METRICS = (
    "ticker_connections",
    "ticker_max_connections",
    "ticker_buffered_bytes",
    "ticker_symbols_unserved",
    "ticker_slow_consumer_disconnects_total",
    "ticker_buffer_budget_disconnects_total",
    "ticker_accept_errors_total",
    "ticker_connections_refused_total",
    "ticker_requests_refused_total",
)


def nice_child() -> None:
    """In an attacker's child process: yield the CPU to the server and the canary (``nice 10``)."""
    os.nice(10)


def fds(pid: int) -> int:
    """Open descriptors of ``pid`` (0 once it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def metrics(url: str) -> dict[str, float]:
    """:data:`METRICS` from ``url``/metrics: each name summed, and each ``reason`` label apart
    (``ticker_accept_errors_total{reason=emfile}``)."""
    out: dict[str, float] = {}
    for key, value in scrape(url).items():
        name, _, labels = key.partition("{")
        if name not in METRICS:
            continue
        out[name] = out.get(name, 0.0) + value
        m = re.search(r'reason="(\w+)"', labels)
        if m:
            k = f"{name}{{reason={m.group(1)}}}"
            out[k] = out.get(k, 0.0) + value
    return out


def healthy(url: str, within: float = 2.0) -> bool:
    """Whether ``url``/healthz answers 200 within ``within`` seconds (scaled by the tests' timing factor)."""
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=timeout(within)) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def log_kind(level: str, logger: str, message: str) -> str:
    """A log line's kind: level, logger and the start of the message with its numbers and details blanked
    (an access line: its status, method and path without the query)."""
    if logger == "tornado.access":
        parts = message.split(" ", 3)
        return f"{level} {logger}: {' '.join(p.split('?')[0] for p in parts[:3])}"
    words = _DIGITS.sub("#", message).split()
    return f"{level} {logger}: {' '.join(words[:4])}"


def noisy(kind: str) -> bool:
    """Whether a kind is the log noise that must stay at one line a second: warnings, errors, and access
    lines of 4xx and 5xx answers (successful requests keep one INFO line each, by design)."""
    level, _, rest = kind.partition(" ")
    if level in ("WARNING", "ERROR", "CRITICAL"):
        return True
    return rest.startswith("tornado.access: ") and rest[16:17] in ("4", "5")


def log_kinds(lines: list[str], t0: float, t1: float) -> dict[str, Any]:
    """Lines logged between wall times ``t0`` and ``t1``: the most lines of one noisy kind in one second
    (with the kind), the most INFO lines in one second, the total, and traceback lines."""
    per: Counter[tuple[str, int]] = Counter()
    info: Counter[int] = Counter()
    total = tracebacks = 0
    in_window = False
    for line in lines:
        m = _LINE.match(line)
        if m is None:
            tracebacks += in_window
            continue
        sec = int(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp())
        in_window = t0 - 1 < sec < t1
        if not in_window:
            continue
        total += 1
        kind = log_kind(m.group(2), m.group(3), m.group(4))
        if noisy(kind):
            per[(kind, sec)] += 1
        else:
            info[sec] += 1
    worst = max(per.items(), key=lambda kv: kv[1], default=(("", 0), 0))
    kinds = sorted({k for k, _ in per})
    return {
        "lines": total,
        "noisy_max_per_s": worst[1],
        "noisy_max_kind": worst[0][0],
        "noisy_kinds": kinds,
        "info_max_per_s": max(info.values(), default=0),
        "traceback_lines": tracebacks,
    }


@dataclass
class Target:
    """A server of the suite: ``args`` for ``ticker serve`` (on 127.0.0.1, an ephemeral port), optionally
    under ``nofile`` descriptors (soft and hard), with a canary subscribed to ``canary`` unless empty."""

    name: str
    args: list[str]
    canary: list[str]
    nofile: int = 0
    port: int = 0
    srv: ServerProcess | None = None
    ops_url: str = ""
    #: monotonic time, RSS KiB, descriptors, CPU seconds, and the seconds the server and the canary waited
    #: for a core (run-queue wait: a shared machine shows here)
    proc_samples: list[tuple[float, int, int, float, float, float]] = field(default_factory=list)
    http_samples: list[tuple[float, bool, bool, dict[str, float]]] = field(default_factory=list)
    canary_lines: list[dict[str, Any]] = field(default_factory=list)
    _canary: subprocess.Popen[str] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.srv is not None and self.srv.proc is not None
        return self.srv.proc.pid

    def start(self) -> Target:
        """Start the server (on ``port`` when set), the canary and the samplers; return once the canary
        gets quotes."""
        self.start_server()
        if self.canary:
            self._canary = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.stress_canary",
                    "--port",
                    str(self.port),
                    "--symbols",
                    ",".join(self.canary),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            self._spawn(self._read_canary)
        self._spawn(self._sample_proc)
        self._spawn(self._sample_http)
        deadline = time.monotonic() + 20
        while self.canary and not any(c["n"] for c in self.canary_lines):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the canary got no quotes within 20 s")
            time.sleep(0.1)
        return self

    def start_server(self) -> None:
        """Start (or restart) the server process alone, on ``port`` once it is known."""
        srv = ServerProcess(["--host", "127.0.0.1", *self.args], port=self.port)
        if self.nofile:
            n = self.nofile
            srv.preexec_fn = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        srv.start(30.0)
        self.srv, self.port = srv, srv.port
        m = _OPS.search(srv.output())
        self.ops_url = f"http://127.0.0.1:{m.group(1)}" if m else ""

    def _spawn(self, fn: Callable[[], None]) -> None:
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        self._threads.append(t)

    def _read_canary(self) -> None:
        assert self._canary is not None and self._canary.stdout is not None
        for line in self._canary.stdout:
            with contextlib.suppress(ValueError):
                self.canary_lines.append(orjson.loads(line))

    def _sample_proc(self) -> None:
        while not self._stop.wait(0.25):
            srv = self.srv
            if srv is None or srv.proc is None or srv.proc.poll() is not None:
                continue
            pid = srv.proc.pid
            canary = [self._canary.pid] if self._canary is not None else []
            with contextlib.suppress(OSError, IndexError, ValueError):
                m, rss, n, cpu = time.monotonic(), rss_kib([pid]), fds(pid), cpu_seconds(pid)
                self.proc_samples.append((m, rss, n, cpu, run_wait_seconds([pid]), run_wait_seconds(canary)))

    def _sample_http(self) -> None:
        while not self._stop.wait(1.0):
            if self.srv is None or self.srv.proc is None or self.srv.proc.poll() is not None:
                continue
            m = time.monotonic()
            main_ok = healthy(self.url)
            ops_ok = healthy(self.ops_url) if self.ops_url else True
            values: dict[str, float] = {}
            with contextlib.suppress(OSError):
                values = metrics(self.ops_url or self.url)
            self.http_samples.append((m, main_ok, ops_ok, values))

    def alive(self) -> bool:
        """Whether the server process is running."""
        return self.srv is not None and self.srv.proc is not None and self.srv.proc.poll() is None

    def stop(self) -> None:
        """Stop the samplers, the canary and the server."""
        self._stop.set()
        if self._canary is not None:
            self._canary.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._canary.wait(5)
            if self._canary.poll() is None:
                self._canary.kill()
        if self.srv is not None:
            self.srv.stop()
        for t in self._threads:
            t.join(5)

    def now(self) -> dict[str, float]:
        """The latest RSS (KiB) and descriptors."""
        rss, n = self.proc_samples[-1][1:3] if self.proc_samples else (0, 0)
        return {"rss_kib": rss, "fds": n}

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        """What the canary and the samplers saw between monotonic ``t0`` and ``t1``."""
        out: dict[str, Any] = {"seconds": round(t1 - t0, 1)}
        lines = [c for c in self.canary_lines if t0 < c["m"] <= t1 + 1]
        if lines:
            lag: Counter[int] = Counter()
            for c in lines:
                lag.update({int(k): v for k, v in c["lat"].items()})
            out["canary"] = {
                "frames": sum(c["n"] for c in lines),
                "p50_ms": percentile(lag, 0.50),
                "p99_ms": percentile(lag, 0.99),
                "max_ms": max(lag, default=None),
                "worst_gap_s": max(max(c["gap"], c["open"]) for c in lines),
                "disconnects": sum(c["dc"] for c in lines),
            }
        procs = [p for p in self.proc_samples if t0 <= p[0] <= t1]
        if len(procs) >= 2:
            cpu = [(b[3] - a[3]) / (b[0] - a[0]) * 100 for a, b in zip(procs[::4], procs[4::4], strict=False)]
            out["rss_peak_kib"] = max(p[1] for p in procs)
            out["fds_peak"] = max(p[2] for p in procs)
            out["cpu_mean_pct"] = round((procs[-1][3] - procs[0][3]) / (procs[-1][0] - procs[0][0]) * 100, 1)
            out["cpu_peak_pct"] = round(max(cpu, default=0.0), 1)
            span = procs[-1][0] - procs[0][0]
            out["server_wait_pct"] = round((procs[-1][4] - procs[0][4]) / span * 100, 1)
            out["canary_wait_pct"] = round((procs[-1][5] - procs[0][5]) / span * 100, 1)
        probes = [h for h in self.http_samples if t0 <= h[0] <= t1]
        out["healthz_probes"] = len(probes)
        out["healthz_failed"] = sum(not h[1] for h in probes)
        out["ops_healthz_failed"] = sum(not h[2] for h in probes)
        scraped = [h[3] for h in probes if h[3]]
        if scraped:
            out["connections_peak"] = max(s.get("ticker_connections", 0.0) for s in scraped)
            out["buffered_peak_bytes"] = max(s.get("ticker_buffered_bytes", 0.0) for s in scraped)
            out["unserved_peak"] = max(s.get("ticker_symbols_unserved", 0.0) for s in scraped)
            out["max_connections"] = scraped[-1].get("ticker_max_connections", 0.0)
        return out

    def timeline(self, t0: float, t1: float) -> list[list[float]]:
        """One entry a second from ``t0`` to ``t1``: seconds since ``t0``, canary frames, canary's largest
        lag (ms) and longest gap (s), server RSS (MiB), descriptors, CPU % and run-queue wait %."""
        out: list[list[float]] = []
        procs = [p for p in self.proc_samples if t0 <= p[0] <= t1 + 1]
        for c in self.canary_lines:
            if not t0 < c["m"] <= t1 + 1:
                continue
            near = [p for p in procs if c["m"] - 1 <= p[0] <= c["m"]]
            row = [
                round(c["m"] - t0, 1),
                c["n"],
                max((int(k) for k in c["lat"]), default=0),
                max(c["gap"], c["open"]),
            ]
            if len(near) >= 2:
                a, b = near[0], near[-1]
                dt = b[0] - a[0] or 1.0
                row += [
                    round(b[1] / 1024),
                    b[2],
                    round((b[3] - a[3]) / dt * 100),
                    round((b[4] - a[4]) / dt * 100),
                ]
            out.append(row)
        return out

    def counters(self) -> dict[str, float]:
        """The latest scrape of the metrics (counters to subtract)."""
        for h in reversed(self.http_samples):
            if h[3]:
                return dict(h[3])
        return {}


def percentile(hist: Counter[int], q: float) -> int | None:
    """The ``q`` quantile of a {value: count} histogram."""
    total = sum(hist.values())
    if not total:
        return None
    need, seen = q * total, 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= need:
            return value
    return max(hist)
