"""The stress suite's bounds and its table in docs/security.md (between the ``stress`` markers).

``python -m bench.stress_report RESULT.json [DOC]`` renders an existing result again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- stress:begin -->", "<!-- stress:end -->"
MAX_GAP_S = 0.5
MAX_P99_MS = 100
MAX_RSS_RATIO = 1.2
MAX_LOG_PER_S = 1
MAX_SLOPE_MB_MIN = 1.0
MAX_STORM_S = 30.0


def bounds(row: dict[str, Any]) -> list[str]:
    """The issue's bounds that ``row`` does not meet (empty: all met): ``down``, ``gap``, ``p99``, ``RSS``,
    ``logs``, ``fd``, ``slope`` (soak), ``storm``; ``healthz`` (not a bound of the issue) when a server
    with ``--metrics-port`` did not answer ``/healthz`` there (the port that must answer while the main
    listener pauses)."""
    out: list[str] = []
    w = row.get("window", {})
    c = w.get("canary")
    if not row.get("alive", False) or row.get("healthz_after") is False:
        out.append("down")
    if c and row["attack"] != "storm":
        if c["worst_gap_s"] > MAX_GAP_S:
            out.append("gap")
        if c["p99_ms"] is not None and c["p99_ms"] > MAX_P99_MS:
            out.append("p99")
    if (
        row["attack"] not in ("soak", "storm")
        and row["after"]["rss_kib"] > MAX_RSS_RATIO * row["before"]["rss_kib"]
    ):
        out.append("RSS")
    if row.get("logs", {}).get("noisy_max_per_s", 0) > MAX_LOG_PER_S:
        out.append("logs")
    m = row.get("metrics", {})
    exhausted = sum(m.get(f"ticker_accept_errors_total{{reason={r}}}", 0) for r in ("emfile", "enfile"))
    if exhausted and w.get("connections_peak", 0) < w.get("max_connections", 0):
        out.append("fd")
    if row["attack"] == "soak" and (row.get("rss_slope_mb_per_min") or 0) >= MAX_SLOPE_MB_MIN:
        out.append("slope")
    if row["attack"] == "storm":
        st = row.get("storm", {})
        if (
            st.get("resumed", 0) < row["tally"]["counts"].get("connected", 1)
            or st.get("kill_to_all_s", 1e9) > MAX_STORM_S
        ):
            out.append("storm")
    if w.get("ops_healthz_failed"):
        out.append("healthz")
    return out


def failures(result: dict[str, Any]) -> list[str]:
    """One line per row with a bound not met."""
    return [f"{r['attack']}: {', '.join(r['bounds'])}" for r in result["rows"] if r["bounds"]]


def _mib(kib: float | None) -> str:
    return "–" if kib is None else f"{kib / 1024:,.0f}"


def _n(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


SHORT = {
    "ticker_connections_refused_total": "refused",
    "ticker_accept_errors_total": "accept pauses",
    "ticker_requests_refused_total": "requests refused",
    "ticker_slow_consumer_disconnects_total": "slow-consumer closes",
    "ticker_buffer_budget_disconnects_total": "budget closes",
}


def outcome(row: dict[str, Any]) -> str:
    """What the attackers counted and what the server's metrics say, in a few words."""
    if row["attack"] == "storm":
        st = row.get("storm", {})
        c = row["tally"]["counts"]
        return (
            f"{st.get('resumed', 0):,} of {c.get('connected', 0):,} resubscribed {_n(st.get('kill_to_all_s'), 1)} s after "
            f"the kill ({_n(st.get('listening_to_all_s'), 1)} s after the new process listened, which took "
            f"{_n(st.get('restart_s'), 1)} s)"
        )
    parts: list[str] = []
    if row["attack"] == "soak":
        parts.append(
            f"RSS slope {_n(row.get('rss_slope_mb_per_min'), 2)} MB/min after {row.get('warmup_s')} s"
        )
    counts = {k: v for k, v in row["tally"]["counts"].items() if k not in ("requests", "attempts")}
    if "requests" in row["tally"]["counts"]:  # look-alike requests: by answer, over every kind of request
        by: dict[str, int] = {}
        for k, v in counts.items():
            if ": " in k:
                by[k.rpartition(": ")[2]] = by.get(k.rpartition(": ")[2], 0) + v
        parts.append(f"{row['tally']['counts']['requests']:,} requests, {counts.get('accepted', 0)} accepted")
        counts = {f"answered {k}": v for k, v in by.items()}
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:6]
    parts += [f"{k} ×{v:,}" for k, v in top]
    for key, h in row["tally"].get("samples", {}).items():
        values = sorted(v for v, n in h for _ in range(n))
        if values:
            parts.append(f"{key} median {values[len(values) // 2]:g}, max {values[-1]:g}")
    for key, v in sorted(row.get("metrics", {}).items()):
        name, _, label = key.partition("{")
        if name in SHORT and (label or not any(k.startswith(name + "{") for k in row["metrics"])):
            parts.append(
                f"{SHORT[name]} {label.removeprefix('reason=').rstrip('}')} {v:,.0f}".replace("  ", " ")
            )
    w = row.get("window", {})
    if w.get("max_connections"):
        parts.append(f"peak {w.get('connections_peak', 0):,.0f} of {w['max_connections']:,.0f} connections")
    if w.get("buffered_peak_bytes"):
        parts.append(f"unsent peak {w['buffered_peak_bytes'] / 2**20:,.0f} MiB")
    if w.get("unserved_peak"):
        parts.append(f"unserved symbols peak {w['unserved_peak']:,.0f}")
    if w.get("healthz_failed") or w.get("ops_healthz_failed"):
        parts.append(
            f"/healthz failed {w.get('healthz_failed')} of {w.get('healthz_probes')} probes on the main port, "
            f"{w.get('ops_healthz_failed')} on --metrics-port"
        )
    return "; ".join(parts)


def table(result: dict[str, Any]) -> list[str]:
    """The two markdown tables: figures, then what each attack did and what the server did."""
    lines = [
        "| attack | canary p99 lag ms | canary worst gap s | RSS MiB before → peak → after | after / before "
        "| FDs before → peak → after | server CPU % mean / peak | run-queue wait % server / canary "
        "| noisy log lines/s (max of one kind) | bounds not met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        w, c = r.get("window", {}), r.get("window", {}).get("canary") or {}
        before, after = r.get("before", {}), r.get("after", {})
        ratio = after.get("rss_kib", 0) / before["rss_kib"] if before.get("rss_kib") else None
        gap = _n(c.get("worst_gap_s"), 2) if r["attack"] != "storm" else "–"
        lines.append(
            f"| {r['attack']} | {_n(c.get('p99_ms'))} | {gap} "
            f"| {_mib(before.get('rss_kib'))} → {_mib(w.get('rss_peak_kib'))} → {_mib(after.get('rss_kib'))} "
            f"| {_n(ratio, 2)} | {_n(before.get('fds'))} → {_n(w.get('fds_peak'))} → {_n(after.get('fds'))} "
            f"| {_n(w.get('cpu_mean_pct'))} / {_n(w.get('cpu_peak_pct'))} "
            f"| {_n(w.get('server_wait_pct'))} / {_n(w.get('canary_wait_pct'))} "
            f"| {r.get('logs', {}).get('noisy_max_per_s', 0)} | {', '.join(r['bounds']) or '✓'} |"
        )
    lines += [
        "",
        "| attack | what the attackers did | what they counted, and the server's metrics |",
        "|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['attack']} | {r['what']} | {outcome(r)} |")
    return lines


def render(result: dict[str, Any], path: Path | str) -> str:
    """The generated block (without the markers)."""
    m = result["machine"]
    load0 = ", ".join(f"{x:.1f}" for x in m.get("loadavg_start", ()))
    load1 = ", ".join(f"{x:.1f}" for x in result.get("loadavg_end", ()))
    head = [
        "<!-- Generated by `make stress` (bench/stress_report.py): edit outside these markers only. -->",
        "",
        f"`{result['command']}` on {result['started']} (commit {m.get('commit')}), {m.get('cpus')} CPUs "
        f"({m.get('cpu_model')}), Python {m.get('python')}; load average {load0} at the start and {load1} at the "
        f"end: the machine was shared with other work, so CPU figures and lags include waiting for a core. "
        f"{result.get('duration_seconds', 0) / 60:.0f} minutes; raw figures in `{Path(path).name}` (bench/results/).",
        "",
    ]
    fails = failures(result)
    tail = ["", ("Bounds not met: " + "; ".join(fails) + ".") if fails else "Every bound met."]
    return "\n".join([*head, *table(result), *tail])


def write_doc(result: dict[str, Any], doc: Path, path: Path | str) -> None:
    """Replace the text between the markers of ``doc`` with the rendered result."""
    text = doc.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{doc}: no {BEGIN} ... {END} markers")
    doc.write_text(text[: start + len(BEGIN)] + "\n" + render(result, path) + "\n" + text[end:])


if __name__ == "__main__":
    res = json.loads(Path(sys.argv[1]).read_text())
    target = (
        Path(sys.argv[2])
        if len(sys.argv) > 2
        else Path(__file__).resolve().parent.parent / "docs" / "security.md"
    )
    write_doc(res, target, sys.argv[1])
