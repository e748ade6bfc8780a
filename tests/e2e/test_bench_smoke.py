"""Smoke run of the benchmark harness (`make bench` in miniature): every figure is produced and sane.

Tiny scenario sizes, a one-second window, ticker and the naive Tornado peer, and ticker alone with bar
subscriptions next to the quotes (crowd-bars) and with changed-fields deltas (broad-delta, beside broad). It
checks that the
figures exist, are positive, ordered and error-free, and that the report keeps hand-written text;
it asserts no timings (those belong to `make bench` only).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.timing import timeout

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def test_bench_smoke_produces_every_figure(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(
        f"# Performance\n\nIntro by hand.\n\n{BEGIN}\nstale table\n{END}\n\n## Analysis\n\nKept.\n"
    )
    cmd = [
        sys.executable,
        "-m",
        "bench.run",
        "--sizes",
        "smoke",
        "--scenario",
        "firehose,idle,crowd-bars,broad,broad-delta",
    ]
    cmd += ["--peers", "naive", "--out", str(tmp_path), "--doc", str(doc)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=timeout(150))
    except subprocess.TimeoutExpired:
        proc.terminate()  # the harness stops its servers and load generators on SIGTERM
        _, stderr = proc.communicate(timeout=timeout(30))
        raise AssertionError(f"bench smoke run timed out:\n{stderr[-3000:]}") from None
    assert proc.returncode == 0, stderr[-3000:]
    [result_file] = tmp_path.glob("*.json")
    result = json.loads(result_file.read_text())
    assert result["command"].startswith(
        "python -m bench.run --sizes smoke --scenario firehose,idle,crowd-bars,broad,broad-delta"
    )
    runs = {(r["scenario"]["name"], r["server"]): r for r in result["runs"]}
    assert set(runs) == {
        ("firehose", "ours"),
        ("firehose", "naive"),
        ("idle", "ours"),
        ("idle", "naive"),
        ("crowd-bars", "ours"),  # ours only: the peers have no bars
        ("broad", "ours"),
        ("broad", "naive"),
        ("broad-delta", "ours"),  # ours only: the peers have no deltas
    }

    for (scenario, server), run in runs.items():
        assert "figures" in run, (scenario, server, run.get("failed") or run.get("skipped"))
        f = run["figures"]
        where = f"{scenario}/{server}"
        assert f["errors"] == 0, (where, f["error_detail"])
        assert f["connections"] == run["scenario"]["conns"], where
        assert f["updates_per_s"] > 0 and f["frames_per_s"] > 0, where
        assert f["updates_per_s"] >= f["frames_per_s"], where  # a quotes frame holds at least one update
        assert 0 < f["delivered_ratio"] <= 1.5, where
        assert f["server_cpu_cores"] > 0 and f["client_cpu_cores"] > 0, where
        assert 0 < f["server_cpu_us_per_update"] <= f["server_cpu_us_per_frame"], where
        assert f["updates_per_server_cpu_s"] > 0, where
        lat = f["latency_ms"]
        assert lat["weight"] > 0, where
        assert 0 <= lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"], (where, lat)
        assert f["rss_before_kib"] > 0 and f["rss_after_kib"] > 0, where
        assert f["wire_bytes_per_update"] > 20, where  # every byte read counted, frame headers too
        if server == "ours":
            assert f["conflated_updates"] == 0, where  # the counter was scraped from /metrics
            assert f["server_reported_updates_sent"] > 0, where
            assert f["server_bytes_per_s"] > 0, where  # ticker_bytes_sent_total
        else:
            assert f["conflated_updates"] is None and f["server_bytes_per_s"] is None, where
        if run["scenario"]["bars"]:
            # bar messages counted apart, and the CPU per message spread over updates and bars
            assert 0 < f["bars_per_s"] <= 1.5 * f["offered_bars_per_s"], (where, f["bars_per_s"])
            assert f["messages_per_s"] == f["updates_per_s"] + f["bars_per_s"], where
            assert 0 < f["server_cpu_us_per_message"] < f["server_cpu_us_per_update"], where
        else:
            assert f["bars_per_s"] == 0 and f["server_cpu_us_per_message"] == f["server_cpu_us_per_update"], (
                where
            )
    assert runs[("idle", "ours")]["figures"]["rss_per_conn_kib"] > 0
    # Coalescing: ticker packs many updates per frame where the naive peer sends one frame per update.
    assert runs[("firehose", "naive")]["figures"]["updates_per_frame"] == 1.0
    assert runs[("firehose", "ours")]["figures"]["updates_per_frame"] > 1.0
    # Deltas carry only the changed fields of the same symbols' updates: fewer bytes per update.
    delta, full = runs[("broad-delta", "ours")]["figures"], runs[("broad", "ours")]["figures"]
    assert delta["wire_bytes_per_update"] < full["wire_bytes_per_update"]

    text = doc.read_text()
    assert text.startswith("# Performance\n\nIntro by hand.\n")
    assert text.rstrip().endswith("## Analysis\n\nKept.")
    generated = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert "stale table" not in generated
    assert result_file.name in generated
    needles = ("### firehose", "### idle", "### crowd-bars", "### Bars next to quotes", "| bar msgs/s |")
    deltas = ("### broad-delta", "### Deltas and maximum rates", "- broad-delta against broad: wire bytes/s")
    for needle in (*needles, *deltas, "| ticker |", "| naive Tornado |", "upd/CPU-s", "### Targets"):
        assert needle in generated, needle
