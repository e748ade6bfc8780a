"""Render a results JSON into the generated part of docs/performance.md (and a PNG chart).

Only the text between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` is rewritten; the
hand-written analysis around it stays. ``python -m bench.report RESULTS.json`` re-renders an
existing result without running anything.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

from bench.scenarios import Scenario
from bench.servers import LABELS, ROOT

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
CHART = "performance.png"


def _num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def _ms(v: int | None) -> str:
    return "–" if v is None else f"{max(v, 0)}"


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.0f} %"


def _runs(result: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Runs by scenario name then server."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in result["runs"]:
        out.setdefault(r["scenario"]["name"], {})[r["server"]] = r
    return out


def _has_bars(runs: dict[str, dict[str, Any]]) -> bool:
    """Whether the scenario of ``runs`` subscribes to bars."""
    return any(r["scenario"].get("bars") for r in runs.values())


def scenario_table(runs: dict[str, dict[str, Any]]) -> list[str]:
    """One markdown table: a row per server of one scenario (with bar columns when it has bars)."""
    bars = _has_bars(runs)
    lines = [
        "| server | updates/s | frames/s | upd/frame | delivered | µs CPU/update | µs CPU/frame | user CPU "
        + ("| bar msgs/s | µs CPU/message (updates + bars) " if bars else "")
        + "| latency p50 / p99 / p99.9 ms | RSS KiB/conn | conflated | errors "
        "| CPU cores: server / clients / other | server run-queue wait |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        + ("---:|---:|" if bars else ""),
    ]
    for server, r in runs.items():
        label = LABELS.get(server, server)
        if "figures" not in r:
            why = r.get("skipped") or f"failed: {r.get('failed')}"
            lines.append(f"| {label} | {why} |" + " |" * (14 if bars else 12))
            continue
        f = r["figures"]
        lat = f["latency_ms"]
        delivered = f["delivered_ratio"]
        cpu = f"{f['server_cpu_cores']:.2f} / {f['client_cpu_cores']:.2f} / {f['other_cpu_cores']:.2f}"
        bar_cells = (
            f"| {_num(f.get('bars_per_s'))} | {_num(f.get('server_cpu_us_per_message'), 2)} " if bars else ""
        )
        lines.append(
            f"| {label} | {_num(f['updates_per_s'])} | {_num(f['frames_per_s'])} "
            f"| {_num(f['updates_per_frame'], 1)} | {_num(delivered * 100 if delivered else None)} % "
            f"| {_num(f['server_cpu_us_per_update'], 2)} | {_num(f['server_cpu_us_per_frame'], 2)} "
            f"| {_pct(f.get('server_user_share'))} "
            f"{bar_cells}"
            f"| {_ms(lat['p50'])} / {_ms(lat['p99'])} / {_ms(lat['p999'])} "
            f"| {_num(f['rss_per_conn_kib'], 1)} | {_num(f['conflated_updates'])} | {f['errors']} "
            f"| {cpu} | {_num(f['server_cpu_wait_ratio'] * 100)} % |"
        )
    return lines


LEGEND = (
    "Columns: *updates/s* and *frames/s* as counted by the clients; *delivered* is updates/s over the "
    "offered rate (ticks × subscribers; ticker coalesces to the latest value per symbol per flush, the "
    "peers send every tick); *µs CPU* is the server's user+system CPU over the window divided by what "
    "the clients received, *user CPU* the share of it spent in the process (the rest is the kernel's: on "
    "loopback a send's TCP work and the reader's wake-up are system time); latency is the client's clock minus the quote's `t` (1 ms resolution); "
    "*RSS KiB/conn* is the server's VmRSS growth after connecting divided by the connections; "
    "*conflated* is ticker's `ticker_updates_conflated_total` over the window; *errors* counts failed "
    "connects, missing subscribe acknowledgements, disconnects and error frames; *CPU cores* splits "
    "the machine's busy time between the server, the load generators and everything else; *run-queue "
    "wait* is the time the server's threads were runnable but had no core (summed over threads), "
    "i.e. how much the machine was oversubscribed."
)
BARS_LEGEND = (
    "With bars (issue 14): *bar msgs/s* counts the `bar` messages the clients got (one per frame, not in "
    "*updates/s* or *frames/s*); *µs CPU/message* is the same server CPU divided by quote updates plus "
    "`bar` messages, while *µs CPU/update* charges it all to the quote updates."
)


def bars_table(by: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Bars next to quotes: each scenario with bars beside the one it extends (its name before ``-bars``)."""
    lines: list[str] = []
    for name, runs in by.items():
        r = runs.get("ours")
        if not _has_bars(runs) or r is None or "figures" not in r:
            continue
        base = by.get(name.removesuffix("-bars"), {}).get("ours")
        for n, run in ((name.removesuffix("-bars"), base), (name, r)):
            if run is None or "figures" not in run:
                continue
            f = run["figures"]
            lines.append(
                f"| {n} | {_num(f['updates_per_s'])} | {_num(f.get('bars_per_s'))} "
                f"| {_num(f['server_cpu_us_per_update'], 2)} | {_num(f.get('server_cpu_us_per_message'), 2)} "
                f"| {f['server_cpu_cores']:.2f} | {_ms(f['latency_ms']['p50'])} / {_ms(f['latency_ms']['p99'])} |"
            )
    if not lines:
        return []
    return [
        "| scenario (ticker) | updates/s | bar msgs/s | µs CPU/update | µs CPU/message | server cores "
        "| quote latency p50 / p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *lines,
    ]


OPTIONS_LEGEND = (
    "Deltas and maximum rates (issue 16): each variant beside the scenario it varies, ticker alone. *wire "
    "KiB/s* is what the clients read off their sockets (WebSocket frames with their headers), *bytes/update* "
    "that over the updates counted; *sent KiB/s* is ticker's own `ticker_bytes_sent_total` (quote and bar "
    "frames, not replies or snapshots); *server cores* is the server's CPU-seconds per second; *throttled* "
    "is `ticker_throttled_subscriptions` at the window's end. With `max_hz` 1 far fewer updates are "
    "delivered, so read *µs CPU/update* (per delivered update) beside *server cores*."
)


def _options(sc: dict[str, Any]) -> str:
    """Issue 16's options of a scenario, as the table shows them."""
    out = []
    if sc.get("delta"):
        out.append("`?delta=1`")
    if sc.get("max_hz") is not None:
        out.append(f"`max_hz` {sc['max_hz']:g}")
    return ", ".join(out) or "–"


def _over(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def option_pairs(by: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    """(base, variant) names: each issue-16 variant ticker ran, beside the scenario it varies."""
    out = []
    for name, runs in by.items():
        r = runs.get("ours")
        if r is not None and "figures" in r:
            base = Scenario(**r["scenario"]).base_name
            if base is not None:
                out.append((base, name))
    return out


def option_ratios(base: dict[str, Any], variant: dict[str, Any]) -> dict[str, float | None]:
    """The variant's figures over its base's (None where either is missing)."""
    keys = (
        "wire_bytes_per_s",
        "wire_bytes_per_update",
        "server_bytes_per_s",
        "updates_per_s",
        "server_cpu_cores",
        "server_cpu_us_per_update",
    )
    return {k: _over(variant.get(k), base.get(k)) for k in keys}


def _times(ratios: dict[str, float | None], key: str) -> str:
    v = ratios[key]
    return "–" if v is None else f"{v:.2f}×"


def _kib(v: float | None) -> str:
    return _num(None if v is None else v / 1024)


def options_table(by: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Deltas and maximum rates: each variant's row beside its base scenario's, then the ratios."""
    rows: list[str] = []
    notes: list[str] = []
    shown: set[str] = set()
    for base, name in option_pairs(by):
        b = by.get(base, {}).get("ours")
        for n in (base, name):
            r = by[n]["ours"] if n == name else b
            if n in shown or r is None or "figures" not in r:
                continue
            shown.add(n)
            f, lat = r["figures"], r["figures"]["latency_ms"]
            delivered = f["delivered_ratio"]
            rows.append(
                f"| {n} | {_options(r['scenario'])} | {_num(f['updates_per_s'])} "
                f"| {_num(delivered * 100 if delivered else None)} % | {_kib(f.get('wire_bytes_per_s'))} "
                f"| {_num(f.get('wire_bytes_per_update'), 1)} | {_kib(f.get('server_bytes_per_s'))} "
                f"| {f['server_cpu_cores']:.3f} | {_num(f['server_cpu_us_per_update'], 2)} "
                f"| {_num(f['server_cpu_us_per_frame'], 2)} | {_num(f.get('throttled_subscriptions'))} "
                f"| {_ms(lat['p50'])} / {_ms(lat['p99'])} |"
            )
        if b is None or "figures" not in b:
            notes.append(f"- {name}: {base} not run, no ratio.")
            continue
        q = option_ratios(b["figures"], by[name]["ours"]["figures"])
        x = functools.partial(_times, q)
        if by[name]["ours"]["scenario"].get("delta"):
            notes.append(
                f"- {name} against {base}: wire bytes/s {x('wire_bytes_per_s')}, bytes per update "
                f"{x('wire_bytes_per_update')}, ticker's sent bytes/s {x('server_bytes_per_s')}; server CPU "
                f"per update {x('server_cpu_us_per_update')}."
            )
        else:
            notes.append(
                f"- {name} against {base}: updates/s {x('updates_per_s')}, server cores "
                f"{x('server_cpu_cores')}, server CPU per delivered update {x('server_cpu_us_per_update')}, "
                f"wire bytes/s {x('wire_bytes_per_s')}."
            )
    if not rows:
        return []
    return [
        "| scenario (ticker) | options | updates/s | delivered | wire KiB/s | bytes/update | sent KiB/s "
        "| server cores | µs CPU/update | µs CPU/frame | throttled | latency p50 / p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        *notes,
    ]


def _ratio(ours: dict[str, Any] | None, peer: dict[str, Any] | None) -> float | None:
    if not ours or not peer or "figures" not in ours or "figures" not in peer:
        return None
    a, b = ours["figures"]["updates_per_server_cpu_s"], peer["figures"]["updates_per_server_cpu_s"]
    return a / b if a and b else None


def ratio_table(by: dict[str, dict[str, dict[str, Any]]], peers: list[str]) -> list[str]:
    """Updates per server CPU-second: ours, each peer, and ours ÷ peer."""
    head = "| scenario | ticker upd/CPU-s | " + " | ".join(
        f"{LABELS[p]} upd/CPU-s | ticker ÷ it" for p in peers
    )
    lines = [head + " |", "|---|---:|" + "---:|---:|" * len(peers)]
    for name, runs in by.items():
        ours = runs.get("ours")
        if ours is None or "figures" not in ours:
            continue
        cells = [name, _num(ours["figures"]["updates_per_server_cpu_s"])]
        for p in peers:
            peer = runs.get(p)
            ok = peer is not None and "figures" in peer
            cells.append(_num(peer["figures"]["updates_per_server_cpu_s"]) if ok and peer else "–")
            ratio = _ratio(ours, peer)
            cells.append("–" if ratio is None else f"{ratio:.1f}×")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def targets(by: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each of issue 5's targets that this run measured."""

    def fig(scenario: str, server: str = "ours") -> dict[str, Any] | None:
        r = by.get(scenario, {}).get(server)
        return r.get("figures") if r else None

    out: list[tuple[str, str, bool | None]] = []

    def check(what: str, value: float | None, limit: float, at_most: bool, unit: str, digits: int) -> None:
        if value is None:
            out.append((what, "not measured", None))
            return
        met = value <= limit if at_most else value >= limit
        times = value / limit if limit else 0.0
        out.append((what, f"{value:,.{digits}f} {unit} ({times:.2f}× the target)", met))

    f = fig("firehose")
    if f:
        check("firehose ≥ 1,000,000 updates/s delivered", f["updates_per_s"], 1e6, False, "updates/s", 0)
        check("firehose ≤ 1 µs server CPU per update", f["server_cpu_us_per_update"], 1.0, True, "µs", 2)
    f = fig("firehose-5ms")
    if f:
        what = "firehose with `--flush-ms 5` (every tick its own update)"
        # The scenario offers exactly 1,000,000 updates/s, so "at least that" means all of them,
        # give or take what is in flight at the window's edges.
        u, d = f["updates_per_s"], f["delivered_ratio"]
        out.append(
            (
                f"{what} ≥ 1,000,000 updates/s delivered",
                f"{u:,.0f} updates/s, {d * 100:.2f} % of the 1,000,000 offered",
                d >= 0.99,
            )
        )
        check(f"{what} ≤ 1 µs server CPU per update", f["server_cpu_us_per_update"], 1.0, True, "µs", 2)
    f = fig("crowd")
    if f:
        d, c, sent = f["delivered_ratio"], f["conflated_updates"], f["server_reported_updates_sent"]
        offered = f["offered_updates_per_s"] * f["window_s"]
        if sent is not None:  # ticker's own count: what it wrote in the window, in flight or not
            got = (
                f"server sent {sent:,} ({sent / offered * 100:.1f} % of offered), clients counted "
                f"{d * 100:.1f} % within the window, {_num(c)} conflated"
            )
            met = sent >= 0.99 * offered or bool(c)
        else:
            got, met = (
                f"clients counted {d * 100:.1f} % of offered, {_num(c)} conflated",
                d >= 0.98 or bool(c),
            )
        out.append(("crowd: every update delivered (or conflation counted)", got, met))
        check("crowd p99 tick→client ≤ 50 ms", f["latency_ms"]["p99"], 50, True, "ms", 0)
        check("crowd ≤ 5 µs server CPU per frame", f["server_cpu_us_per_frame"], 5.0, True, "µs", 2)
    f, base = fig("crowd-jwt"), fig("crowd")
    if f and base and f["server_cpu_us_per_update"] and base["server_cpu_us_per_update"]:
        a, b = f["server_cpu_us_per_update"], base["server_cpu_us_per_update"]
        out.append(
            (
                "crowd-jwt (`--auth jwt`, all real-time) within 10 % of crowd in µs server CPU per update",
                f"{a:.2f} µs against {b:.2f} µs ({(a / b - 1) * 100:+.1f} %)",
                a <= 1.1 * b,
            )
        )
    f = fig("crowd-delayed")
    if f and f.get("delayed"):
        d = f["delayed"]
        out.append(
            (
                "crowd-delayed (half the subscribers delayed): server CPU and RSS stated",
                f"{_num(f['server_cpu_us_per_update'], 2)} µs CPU per update, {f['server_cpu_cores']:.2f} cores, "
                f"RSS {f['rss_after_kib']:,} KiB ({_num(f['rss_per_conn_kib'], 1)} KiB/conn); delayed half "
                f"{d['updates_per_s']:,.0f} updates/s, t→arrival p50 {_ms(d['latency_ms']['p50'])} ms",
                None,
            )
        )
    f, base = fig("crowd-bars"), fig("crowd")
    if f:
        vs = (
            f" (crowd without bars: {_num(base['server_cpu_us_per_update'], 2)} µs per update)"
            if base and base["server_cpu_us_per_update"]
            else ""
        )
        out.append(
            (
                "crowd-bars (bars of 2 symbols at 1s and 1m next to the quotes): server CPU per update stated",
                f"{_num(f['server_cpu_us_per_update'], 2)} µs CPU per update, "
                f"{_num(f.get('server_cpu_us_per_message'), 2)} per message (updates + "
                f"{_num(f.get('bars_per_s'))} bar msgs/s), {f['server_cpu_cores']:.2f} cores{vs}",
                None,
            )
        )
    for base_name, name in option_pairs(by):
        f, b = fig(name), fig(base_name)
        assert f is not None
        if by[name]["ours"]["scenario"].get("delta"):
            what = (
                f"{name} (`?delta=1`): bytes per second on the wire with deltas, against {base_name} without"
            )
            got = f"{_kib(f.get('wire_bytes_per_s'))} KiB/s, {_num(f.get('wire_bytes_per_update'), 1)} bytes/update"
            if b:
                q = option_ratios(b, f)
                got += (
                    f" against {_kib(b.get('wire_bytes_per_s'))} KiB/s, "
                    f"{_num(b.get('wire_bytes_per_update'), 1)} bytes/update: "
                    f"{_times(q, 'wire_bytes_per_s')} the bytes per second"
                )
        else:
            hz = by[name]["ours"]["scenario"]["max_hz"]
            what = f"{name} (`max_hz` {hz:g}): server CPU per delivered update stated"
            got = (
                f"{_num(f['server_cpu_us_per_update'], 2)} µs per update, {_num(f['updates_per_s'])} updates/s, "
                f"{f['server_cpu_cores']:.3f} cores"
            )
            if b:
                got += (
                    f" ({base_name}: {_num(b['server_cpu_us_per_update'], 2)} µs, {_num(b['updates_per_s'])} "
                    f"updates/s, {b['server_cpu_cores']:.3f} cores)"
                )
        out.append((what, got, None))
    f = fig("broad")
    if f:
        check("broad p99 tick→client ≤ 50 ms", f["latency_ms"]["p99"], 50, True, "ms", 0)
    f = fig("idle")
    if f:
        check("idle ≤ 10 KiB RSS per connection", f["rss_per_conn_kib"], 10.0, True, "KiB", 1)
    for peer, need in (("naive", 10.0), ("websockets", 3.0), ("node", 1.0)):
        ratios = {n: _ratio(runs.get("ours"), runs.get(peer)) for n, runs in by.items() if n != "idle"}
        found = {n: r for n, r in ratios.items() if r is not None}
        if found:
            worst = min(found, key=lambda n: found[n])
            word = "ahead of" if need == 1.0 else f"≥ {need:g}×"
            out.append(
                (
                    f"updates per server CPU-second {word} {LABELS[peer]} (each scenario but idle)",
                    ", ".join(f"{n} {r:.1f}×" for n, r in found.items()),
                    found[worst] > need if need == 1.0 else found[worst] >= need,
                )
            )
    return out


def render(result: dict[str, Any], json_name: str, chart: bool) -> str:
    """The generated markdown block (markers included)."""
    by = _runs(result)
    m = result["machine"]
    peers = [p for p in ("naive", "websockets", "node") if any(p in runs for runs in by.values())]
    measured = [r["figures"] for r in result["runs"] if "figures" in r]
    other = sum(f["other_cpu_cores"] for f in measured) / len(measured) if measured else 0.0
    lines = [
        BEGIN,
        "<!-- Generated by `make bench` (bench/report.py): edit outside these markers only. -->",
        "",
        f"Run `{result['started']}`: `{result['command']}` — {result['duration_seconds']:.0f} s in all, "
        f"raw figures in `bench/results/{json_name}`.",
        "",
        f"Machine: {m['cpus']} × {m['cpu_model']}, Linux {m['kernel']}, Python {m['python']}, "
        f"Node {m['node'] or '–'}, commit `{m['commit']}`. Load average at start "
        f"{m['loadavg_start'][0]:.1f}; other processes (not the server, not the load generators) used "
        f"{other:.2f} cores on average during the measured windows.",
        "",
        LEGEND,
        "",
    ]
    if any(_has_bars(runs) for runs in by.values()):
        lines += [BARS_LEGEND, ""]
    for name, runs in by.items():
        sc = Scenario(**next(iter(runs.values()))["scenario"])
        lines += [
            f"### {name}",
            "",
            f"{sc.describe()}; {sc.loadgens} load-generator processes, {sc.warmup:g} s warm-up, "
            f"{sc.window:g} s measured; offered {sc.offered_per_second():,.0f} updates/s"
            + (f" and {sc.offered_bars_per_second():,.0f} bar msgs/s." if sc.bars else "."),
            "",
            *scenario_table(runs),
            "",
        ]
    bt = bars_table(by)
    if bt:
        lines += ["### Bars next to quotes", "", *bt, ""]
    ot = options_table(by)
    if ot:
        lines += ["### Deltas and maximum rates", "", OPTIONS_LEGEND, "", *ot, ""]
    if peers:
        lines += [
            "### Updates per server CPU-second, ticker against the peers",
            "",
            *ratio_table(by, peers),
            "",
        ]
    tg = targets(by)
    if tg:
        lines += ["### Targets", "", "| target | measured | met |", "|---|---|---|"]
        for what, got, met in tg:
            lines.append(f"| {what} | {got} | {'–' if met is None else 'yes' if met else '**no**'} |")
        lines.append("")
    if chart:
        lines += [f"![updates per server CPU-second]({CHART})", ""]
    lines.append(END)
    return "\n".join(lines)


def write_chart(result: dict[str, Any], path: Path) -> bool:
    """Bar chart of updates per server CPU-second per scenario and server (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    by = _runs(result)
    names = [n for n in by if n != "idle"]
    servers = [s for s in ("ours", "naive", "websockets", "node") if any(s in by[n] for n in names)]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(1, len(servers))
    for i, s in enumerate(servers):
        vals = []
        for n in names:
            r = by[n].get(s)
            vals.append(r["figures"]["updates_per_server_cpu_s"] if r and "figures" in r else 0)
        ax.bar([x + i * width for x in range(len(names))], vals, width, label=LABELS[s])
    ax.set_xticks([x + width * (len(servers) - 1) / 2 for x in range(len(names))], names)
    ax.set_yscale("log")
    ax.set_ylabel("updates delivered per server CPU-second")
    ax.set_title(f"ticker vs peers — {result['command']} ({result['started']})")
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_doc(result: dict[str, Any], doc: Path, json_path: Path) -> None:
    """Rewrite the generated block of ``doc`` (creating the file or the markers when missing)."""
    chart = write_chart(result, doc.parent / CHART)
    block = render(result, json_path.name, chart)
    text = doc.read_text() if doc.exists() else "# Performance\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def main() -> None:
    src = Path(sys.argv[1])
    doc = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "docs" / "performance.md"
    write_doc(json.loads(src.read_text()), doc, src)


if __name__ == "__main__":
    main()
