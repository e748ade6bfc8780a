"""``make bench``: run every scenario against ticker and its peers and write the results.

Each (scenario, server) run starts the server as its own process on a free loopback port, opens
the connections from separate load-generator processes, waits for a warm-up, then measures a
window: the clients' counts and latency histograms, the server's CPU (utime + stime from
/proc/PID/stat, its whole process tree) and RSS, the load generators' own CPU, and for ticker its
/metrics counters. Results go to ``bench/results/<timestamp>.json`` and the tables to
``docs/performance.md`` (see ``bench.report``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import select
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bench import procs, servers
from bench import profile as prof
from bench.figures import summarize
from bench.scenarios import Scenario, scenarios
from tests.support.system import free_port, rss_kib, wait_port

ROOT = servers.ROOT
WORK = ROOT / "bench" / ".work"
METRICS = (
    "ticker_updates_conflated_total",
    "ticker_updates_sent_total",
    "ticker_frames_sent_total",
    "ticker_bar_history_loading",
    "ticker_bytes_sent_total",
    "ticker_throttled_subscriptions",
)
HISTORY_WAIT = 60.0  # seconds a run waits for the server's bar history to load before its warmup


class RunError(Exception):
    """A run could not be measured (server did not start, load generator died, ...)."""


def log(msg: str) -> None:
    """Progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def scrape(port: int, token: str | None = None) -> dict[str, float] | None:
    """The ticker counters of interest from /metrics (``token``: its bearer token), summed over labels;
    None when unreachable."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    out = dict.fromkeys(METRICS, 0.0)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            name = key.partition("{")[0]
            if name in out:
                out[name] += float(value)
    return out


def wait_for_history(port: int, token: str | None) -> None:
    """Wait (at most :data:`HISTORY_WAIT` s) until the server loads no bar history (``ticker_bar_history_loading``)."""
    deadline = time.monotonic() + HISTORY_WAIT
    while time.monotonic() < deadline:
        m = scrape(port, token)
        if m is None or not m["ticker_bar_history_loading"]:
            return
        time.sleep(0.1)
    log(f"bar history still loading after {HISTORY_WAIT:.0f} s: measuring anyway")


def read_event(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The next JSON event line from a load generator."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RunError("load generator did not answer in time")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            line = proc.stdout.readline()
            if not line:
                raise RunError(f"load generator exited (code {proc.wait()})")
            if line.startswith("{"):
                return dict(json.loads(line))


def send(procs_: list[subprocess.Popen[str]], cmd: str) -> None:
    """Send one command line to every load generator."""
    for p in procs_:
        assert p.stdin is not None
        p.stdin.write(cmd + "\n")
        p.stdin.flush()


def stop(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; the process (group) is gone afterwards."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def measure(server: str, sc: Scenario, logs: Path, profile: str = "") -> dict[str, Any]:
    """Run ``sc`` against ``server`` once and return the raw measurements."""
    port = free_port()
    cmd = servers.command(server, sc, port)
    log_file: IO[str] = open(logs / f"{sc.name}-{server}.log", "w")  # noqa: SIM115
    extra_env = servers.environment(sc)
    srv = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, **extra_env},
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    gens: list[subprocess.Popen[str]] = []
    try:
        if not wait_port(port, 20):
            raise RunError(f"server did not listen within 20 s (exit {srv.poll()})")
        time.sleep(0.5 if sc.workers == 1 else 1.5)
        rss_before = rss_kib(procs.tree(srv.pid))
        per, extra = divmod(sc.conns, sc.loadgens)
        first = 0
        spec = json.dumps(dataclasses.asdict(sc))
        # Under --auth jwt the load generators mint their tokens with the server's secret.
        gen_env = {**os.environ, **{k: v for k, v in extra_env.items() if k == servers.SECRET_ENV}}
        for i in range(sc.loadgens):
            count = per + (1 if i < extra else 0)
            gens.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bench.loadgen",
                        "--url",
                        f"ws://127.0.0.1:{port}{sc.ws_path()}",
                        "--scenario",
                        spec,
                        "--first",
                        str(first),
                        "--count",
                        str(count),
                    ],
                    cwd=ROOT,
                    env=gen_env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
            )
            first += count
        t_connect = time.monotonic()
        connected = [read_event(g, 180) for g in gens]
        connect_s = time.monotonic() - t_connect
        send(gens, "subscribe")
        t_sub = time.monotonic()
        ready = [read_event(g, 90) for g in gens]
        subscribe_s = time.monotonic() - t_sub
        # With several workers each scrape reaches one of them at random: no usable delta.
        token = servers.metrics_token(sc)
        if server == "ours" and sc.workers == 1:  # steady state: the startup's history loads are not measured
            wait_for_history(port, token)
        time.sleep(sc.warmup)
        pids = procs.tree(srv.pid)
        send(gens, "mark")
        (user0, sys0), busy0, t0 = procs.cpu_split(pids), procs.machine_busy_seconds(), time.monotonic()
        wait0 = procs.run_wait_seconds(pids)
        m0 = scrape(port, token) if server == "ours" and sc.workers == 1 else None
        spy = (
            prof.start(srv.pid, sc.window, logs / f"{sc.name}-{server}.prof", profile == "native")
            if profile
            else None
        )
        for g in gens:
            read_event(g, 30)
        time.sleep(max(0.0, sc.window - (time.monotonic() - t0)))
        send(gens, "report")
        (user1, sys1), busy1, t1 = procs.cpu_split(pids), procs.machine_busy_seconds(), time.monotonic()
        wait1 = procs.run_wait_seconds(pids)
        reports = [read_event(g, 60) for g in gens]
        m1 = scrape(port, token) if m0 is not None else None
        profile_summary = None
        if spy is not None:
            spy.wait(30)
            profile_summary = prof.summarize(logs / f"{sc.name}-{server}.prof")
        rss_after = rss_kib(pids)
        send(gens, "quit")
        return {
            "command": [c.replace(f"{ROOT}/", "") for c in cmd],  # repository-relative, no machine paths
            "env": sorted(extra_env),  # names only: the values are keys
            "connected": connected,
            "ready": ready,
            "connect_seconds": connect_s,
            "subscribe_seconds": subscribe_s,
            "reports": reports,
            "server_cpu_seconds": user1 - user0 + sys1 - sys0,
            "server_cpu_user_seconds": user1 - user0,
            "server_wait_seconds": wait1 - wait0,
            "machine_busy_seconds": busy1 - busy0,
            "window": t1 - t0,
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "server_processes": len(pids),
            "metrics_before": m0,
            "metrics_after": m1,
            "server_alive": srv.poll() is None,
            "profile": profile_summary,
        }
    finally:
        for g in gens:
            with contextlib.suppress(OSError):
                assert g.stdin is not None
                g.stdin.close()  # end of input: a load generator that did not get "quit" exits too
        for g in gens:
            try:
                g.wait(10)
            except subprocess.TimeoutExpired:
                stop(g)
        stop(srv)
        log_file.close()


def dump(result: dict[str, Any]) -> str:
    """The result as indented JSON, with each latency histogram kept on one line."""
    hists: list[str] = []

    def compact(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {
                k: (_token(hists, v) if k.endswith("latency_ms") and isinstance(v, list) else compact(v))
                for k, v in obj.items()
            }
        if isinstance(obj, list):
            return [compact(v) for v in obj]
        return obj

    text = json.dumps(compact(result), indent=1)
    for i, h in enumerate(hists):
        text = text.replace(f'"@hist{i}@"', h, 1)
    return text + "\n"


def _token(hists: list[str], value: list[Any]) -> str:
    hists.append(json.dumps(value, separators=(",", ":")))
    return f"@hist{len(hists) - 1}@"


def brief(f: dict[str, Any]) -> str:
    """One progress line of a run's main figures."""
    us = f["server_cpu_us_per_update"]
    line = (
        f"{f['updates_per_s']:>12,.0f} upd/s  {'–' if us is None else f'{us:.2f}'} µs/upd  "
        f"p99 {f['latency_ms']['p99']} ms  RSS {f['rss_after_kib']:,} KiB  errors {f['errors']}"
    )
    if f.get("wire_bytes_per_s") and f.get("wire_bytes_per_update"):
        line += f"  wire {f['wire_bytes_per_s'] / 1024:,.0f} KiB/s ({f['wire_bytes_per_update']:.0f} B/upd)"
    if f.get("throttled_subscriptions"):
        line += f"  throttled {f['throttled_subscriptions']:,}"
    if f.get("bars_per_s"):
        line += f"  bars {f['bars_per_s']:,.0f}/s, {f['server_cpu_us_per_message']:.2f} µs/msg"
    if f.get("delayed"):
        d = f["delayed"]
        line += f"  (delayed: {d['updates_per_s']:,.0f} upd/s, t→arrival p50 {d['latency_ms']['p50']} ms)"
    return line


def machine_info() -> dict[str, Any]:
    """What the results were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    node = (
        subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        if (servers.shutil.which("node"))
        else None
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node,
        "commit": commit,
        "loadavg_start": os.getloadavg(),
    }


def make_command(args: argparse.Namespace) -> str:
    """The `make bench` command line equivalent to ``args`` (the module's for smoke runs)."""
    if args.sizes == "smoke":
        return " ".join(["python -m bench.run", *(sys.argv[1:])])
    env = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("TICKER_")]
    parts = [*env, "make bench"]
    if args.sizes == "quick":
        parts.append("QUICK=1")
    if args.profile:
        parts.append(f"PROFILE={'native' if args.profile == 'native' else 1}")
    if args.scenario:
        parts.append(f"SCENARIO={args.scenario}")
    if args.peers != ",".join(servers.PEERS):
        parts.append(f"PEERS={args.peers}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", choices=["full", "quick", "smoke"], default="full")
    ap.add_argument("--scenario", default="", help="comma list of scenario names (default: all)")
    ap.add_argument("--peers", default=",".join(servers.PEERS), help="comma list of peers ('' for none)")
    ap.add_argument("--no-ours", action="store_true", help="peers only")
    ap.add_argument(
        "--profile",
        nargs="?",
        const="python",
        default="",
        choices=["python", "native"],
        help="ticker only, sampled by py-spy (native: C frames too); no doc update",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="directory for the JSON")
    ap.add_argument(
        "--doc",
        type=Path,
        default=None,
        help="markdown file for the tables ('' to skip); default docs/performance.md, for complete runs only",
    )
    args = ap.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers and load generators of the current run are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    chosen = scenarios(args.sizes)
    if args.scenario:
        wanted = args.scenario.split(",")
        unknown = set(wanted) - {s.name for s in chosen}
        if unknown:
            ap.error(
                f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from "
                f"{', '.join(s.name for s in chosen)}"
            )
        chosen = [s for s in chosen if s.name in wanted]
    peers = [p for p in args.peers.split(",") if p]
    if set(peers) - set(servers.PEERS):
        ap.error(f"unknown peer(s); choose from {', '.join(servers.PEERS)}")
    names = ([] if args.no_ours else ["ours"]) + peers
    if args.profile:
        if prof.py_spy() is None:
            ap.error("--profile needs py-spy (pip install -e '.[bench]')")
        names, args.doc = ["ours"], Path("")

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logs = WORK / stamp
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result: dict[str, Any] = {
        "started": stamp,
        "command": make_command(args),
        "sizes": args.sizes,
        "machine": machine_info(),
        "ticker_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("TICKER_")},
        "runs": [],
    }
    for sc in chosen:
        for server in names:
            if sc.ours_only and server != "ours":
                continue
            entry: dict[str, Any] = {"scenario": dataclasses.asdict(sc), "server": server}
            reason = servers.unavailable(server, sc)
            if reason is not None:
                entry["skipped"] = reason
                log(f"{sc.name:12} {server:10} skipped: {reason}")
            else:
                log(f"{sc.name:12} {server:10} running ({sc.conns} conns)")
                try:
                    raw = measure(server, sc, logs, args.profile)
                    entry["raw"] = raw
                    entry["figures"] = summarize(sc, raw)
                    log(f"{sc.name:12} {server:10} {brief(entry['figures'])}")
                    if raw["profile"]:
                        log(prof.render(sc.name, raw["profile"]))
                except RunError as exc:
                    entry["failed"] = str(exc)
                    log(f"{sc.name:12} {server:10} FAILED: {exc}")
            result["runs"].append(entry)
    result["duration_seconds"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{stamp}.json"
    path.write_text(dump(result))
    log(f"wrote {path} in {result['duration_seconds']} s")
    complete = args.sizes == "full" and not args.scenario and not args.no_ours and peers == servers.PEERS
    if args.doc is None and not complete:
        log("partial run: docs/performance.md left as it is (DOC=FILE writes the tables there)")
    elif args.doc is None:
        args.doc = ROOT / "docs" / "performance.md"
    if args.doc is not None and str(args.doc) not in ("", "."):
        from bench.report import write_doc

        write_doc(result, args.doc, path)
        log(f"updated {args.doc}")
    return 1 if any("failed" in r for r in result["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
