"""``make stress``: attack ``ticker serve`` on loopback, one attack at a time, beside a canary subscriber.

Each attack of issue 17 runs bounded in time from attacker processes (:mod:`bench.stress_attacks`,
niced so that the server and the canary come first on a shared machine) against a server with the
default settings and the simulated market (:mod:`bench.stress_target`: its canary, RSS, descriptors,
CPU, ``/healthz``, metrics and log lines), followed by a recovery wait. Then a soak (churn with a few
slow readers; the slope of RSS) and a reconnect storm of Python clients through a restart
(:mod:`bench.stress_storm`). The result goes to ``bench/results/stress-<time>.json`` and, for a complete
full run, into docs/security.md between its ``stress`` markers (:mod:`bench.stress_report`).

``python -m bench.stress [--sizes full|quick|smoke] [--attack fd,slow-readers,...,soak,storm] [--out DIR]
[--doc FILE]``
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.stress_plan import CANARY, TARGETS, Attack, Sizes, plan
from bench.stress_report import bounds, failures, write_doc
from bench.stress_storm import run_storm
from bench.stress_target import ROOT, Target, healthy, log_kinds, metrics, nice_child
from bench.stress_wire import Job, addresses
from feeds.listings import us_listings


def log(msg: str) -> None:
    print(f"[stress {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_job(base: Job, workers: int, timeout: float) -> dict[str, Any]:
    """Run ``base`` split over ``workers`` attacker processes (connections and addresses shared out);
    return their merged tally."""
    procs = []
    for w in range(workers):
        addrs = base.addrs[w::workers] or base.addrs
        n = base.n // workers + (1 if w < base.n % workers else 0)
        idle = base.idle // workers + (1 if w < base.idle % workers else 0)
        job = {**base.__dict__, "addrs": addrs, "n": n, "idle": idle, "seed": base.seed * 10 + w}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.stress_attacks", json.dumps(job)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=nice_child,
            )
        )
    counts: dict[str, int] = {}
    samples: dict[str, dict[float, int]] = {}
    for p in procs:
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            counts["attacker timed out"] = counts.get("attacker timed out", 0) + 1
        for line in out.splitlines()[-1:]:
            r = json.loads(line)
            for k, v in r["counts"].items():
                counts[k] = counts.get(k, 0) + v
            for k, h in r["samples"].items():
                for value, c in h:
                    samples.setdefault(k, {})[value] = samples.setdefault(k, {}).get(value, 0) + c
        if p.returncode:
            counts["attacker failed"] = counts.get("attacker failed", 0) + 1
    return {"counts": counts, "samples": {k: sorted(h.items()) for k, h in samples.items()}}


def fresh_counters(t: Target) -> dict[str, float]:
    """The target's metrics now (the last sampled ones when it does not answer)."""
    try:
        return metrics(t.ops_url or t.url)
    except OSError:
        return t.counters()


def delta(c0: dict[str, float], c1: dict[str, float]) -> dict[str, float]:
    """Counter increases between two scrapes (``_total`` series only, non-zero ones)."""
    return {k: v - c0.get(k, 0.0) for k, v in c1.items() if "_total" in k and v - c0.get(k, 0.0) > 0}


def directory() -> list[str]:
    """The simulated market's directory (the bundled US listings), the canary's symbols first."""
    return CANARY + [s for s in us_listings() if s not in CANARY]


def run_attack(
    a: Attack, t: Target, block: int, recovery: float, symbols: list[str], nofile: int = 0
) -> dict[str, Any]:
    """One attack against ``t`` and its recovery wait: the row's figures."""
    c0, before = fresh_counters(t), t.now()
    n = int(c0.get("ticker_max_connections", 0)) + a.over if a.over is not None else a.job.get("n", 0)
    job = Job(
        a.kind or a.name, t.port, addresses(block, a.addrs), **{**a.job, "n": n}, symbols=symbols[: a.symbols]
    )
    what = a.what.format(n=n, addrs=a.addrs, s=job.seconds, idle=job.idle, size=job.size, nofile=nofile)
    log(f"{a.name}: {what}")
    w0, m0 = time.time(), time.monotonic()
    tally = run_job(job, a.workers, a.job.get("seconds", 10) + a.job.get("within", 0) + 120)
    m1 = time.monotonic()
    end = m1 + recovery
    while time.monotonic() < end and t.alive():
        time.sleep(0.5)
    time.sleep(0.3)  # one more /proc sample
    row = {
        "attack": a.name,
        "what": what,
        "target": t.name,
        "n": n,
        "max_connections": c0.get("ticker_max_connections"),
        "tally": tally,
        "window": t.window(m0, m1 + 2),
        "timeline": t.timeline(m0, m1 + 2),
        "before": before,
        "after": t.now(),
        "recovery_s": round(time.monotonic() - m1, 1),
        "metrics": delta(c0, fresh_counters(t)),
        "logs": log_kinds(t.srv.lines if t.srv else [], w0, time.time()),
        "alive": t.alive(),
        "healthz_after": healthy(t.url, 10.0),
    }
    row["bounds"] = bounds(row)
    log(f"{a.name}: {summary(row)}")
    return row


def summary(row: dict[str, Any]) -> str:
    """One progress line of a row."""
    w, c = row["window"], row["window"].get("canary", {})
    return (
        f"canary p99 {c.get('p99_ms')} ms gap {c.get('worst_gap_s')} s; RSS {row['before']['rss_kib'] // 1024}"
        f"→{w.get('rss_peak_kib', 0) // 1024}→{row['after']['rss_kib'] // 1024} MiB; FDs {row['before']['fds']}"
        f"→{w.get('fds_peak')}→{row['after']['fds']}; CPU {w.get('cpu_mean_pct')} %; "
        f"logs {row['logs']['noisy_max_per_s']}/s; {', '.join(row['bounds']) or 'within bounds'}"
    )


def run_soak(t: Target, s: Sizes, symbols: list[str]) -> dict[str, Any]:
    """Churn with a few slow readers for ``s.soak`` seconds; RSS slope after the warm-up (a fifth)."""
    log(f"soak: {s.soak_clients} churning clients and 5 slow readers for {s.soak:.0f} s")
    job = Job("churn", t.port, addresses(150, 20), n=s.soak_clients, idle=5, seconds=s.soak, symbols=symbols)
    c0, before = fresh_counters(t), t.now()
    w0, m0 = time.time(), time.monotonic()
    tally = run_job(job, 1, s.soak + 120)
    m1 = time.monotonic()
    warm = m0 + s.soak / 5
    pts = [(p[0], p[1] * 1024 / 1e6) for p in t.proc_samples if warm <= p[0] <= m1]  # MB
    row = {
        "attack": "soak",
        "what": f"{s.soak / 60:g} min of churn: {s.soak_clients} clients connect, subscribe, unsubscribe, leave; 5 slow readers",
        "target": t.name,
        "n": s.soak_clients,
        "tally": tally,
        "window": t.window(m0, m1),
        "timeline": t.timeline(m0, m1),
        "before": before,
        "after": t.now(),
        "recovery_s": 0,
        "metrics": delta(c0, fresh_counters(t)),
        "logs": log_kinds(t.srv.lines if t.srv else [], w0, time.time()),
        "alive": t.alive(),
        "rss_slope_mb_per_min": round(slope(pts) * 60, 3) if len(pts) > 2 else None,
        "warmup_s": round(s.soak / 5),
    }
    row["bounds"] = bounds(row)
    log(f"soak: {summary(row)}; RSS slope {row['rss_slope_mb_per_min']} MB/min")
    return row


def slope(pts: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(pts)
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    var = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / var if var else 0.0


def machine() -> dict[str, Any]:
    """What the run was measured on (load average before and after: the machine is shared)."""
    from bench.run import machine_info

    return machine_info()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", choices=["full", "quick", "smoke"], default="full")
    ap.add_argument("--attack", default="", help="comma list of attacks (and soak, storm); default all")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--doc", type=Path, default=None, help="markdown file for the table ('' to skip)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    s = plan(args.sizes)
    names = [x.name for x in s.attacks] + ["soak", "storm"]
    wanted = [w for w in args.attack.split(",") if w] or names
    if set(wanted) - set(names):
        ap.error(
            f"unknown attack(s) {', '.join(sorted(set(wanted) - set(names)))}; choose from {', '.join(names)}"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {
        "started": stamp,
        "command": make_command(args),
        "sizes": s.name,
        "machine": machine(),
        "rows": [],
    }
    started = time.monotonic()
    symbols = directory()
    main_t: Target | None = None
    try:
        for k, a in enumerate(s.attacks):
            if a.name not in wanted:
                continue
            if a.target == "main":
                if main_t is None:
                    main_t = Target("main", TARGETS["main"][0], CANARY).start()
                    time.sleep(2)
                result["rows"].append(
                    guarded(a.name, functools.partial(run_attack, a, main_t, 10 + k, s.recovery, symbols))
                )
                continue
            args_, nofile = TARGETS[a.target]
            other = Target(a.target, args_, CANARY, nofile=s.ulimit if nofile else 0).start()
            try:
                time.sleep(2)
                result["rows"].append(
                    guarded(
                        a.name,
                        functools.partial(run_attack, a, other, 10 + k, s.recovery, symbols, other.nofile),
                    )
                )
            finally:
                other.stop()
    finally:
        if main_t is not None:
            main_t.stop()
    if "soak" in wanted:
        soak_t = Target("soak", TARGETS["main"][0], CANARY).start()
        try:
            time.sleep(2)
            result["rows"].append(guarded("soak", lambda: run_soak(soak_t, s, symbols)))
        finally:
            soak_t.stop()
    if "storm" in wanted:
        result["rows"].append(guarded("storm", lambda: run_storm(s.storm, s.storm_workers, CANARY, log)))
    result["duration_seconds"] = round(time.monotonic() - started, 1)
    result["loadavg_end"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"stress-{stamp}.json"
    path.write_text(dump(result))
    log(f"wrote {path} in {result['duration_seconds']} s")
    complete = s.name == "full" and wanted == names
    doc = args.doc if args.doc is not None else (ROOT / "docs" / "security.md" if complete else None)
    if doc is not None and str(doc) not in ("", "."):
        write_doc(result, doc, path)
        log(f"updated {doc}")
    elif args.doc is None:
        log("partial run: docs/security.md left as it is (DOC=FILE writes the table there)")
    for line in failures(result):
        log(f"bound not met: {line}")
    return 1 if any("failed" in r for r in result["rows"]) else 0


def guarded(name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``, or a row saying why it failed (the other attacks still run)."""
    try:
        return run()
    except Exception as exc:
        log(f"{name}: FAILED: {exc!r}")
        return {"attack": name, "failed": repr(exc), "bounds": ["failed"]}


def dump(result: dict[str, Any]) -> str:
    """The result as indented JSON, each row's timeline kept compact (one line per row)."""
    lines: list[str] = []
    rows = [
        {**r, "timeline": f"@timeline{i}@"} if "timeline" in r else r for i, r in enumerate(result["rows"])
    ]
    for r in result["rows"]:
        lines.append(json.dumps(r.get("timeline"), separators=(",", ":")))
    text = json.dumps({**result, "rows": rows}, indent=1)
    for i, compact in enumerate(lines):
        text = text.replace(f'"@timeline{i}@"', compact, 1)
    return text + "\n"


def make_command(args: argparse.Namespace) -> str:
    """The ``make stress`` command equivalent to ``args`` (the module's for smoke runs)."""
    if args.sizes == "smoke":
        return " ".join(["python -m bench.stress", *sys.argv[1:]])
    parts = ["make stress"]
    if args.sizes == "quick":
        parts.append("QUICK=1")
    if args.attack:
        parts.append(f"ATTACK={args.attack}")
    return " ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
