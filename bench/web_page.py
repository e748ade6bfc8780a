"""Measure how the trader's page keeps up: N rows updating R times a second in headless Chromium.

Starts ``ticker serve`` (simulated feed, N symbols at R ticks/s each), opens the page with those N
symbols and samples for D seconds: animation-frame intervals, long tasks (>50 ms main-thread work),
renders, quotes applied per second and the feed-to-screen latency the page itself reports. Unless
``--no-panel``, the first symbol's detail panel is open meanwhile: its chart holds the simulated
market's backfilled session of 1m bars and takes the live bar updates (one per tick, R a second).

    .venv/bin/python bench/web_page.py [--rows 100] [--rate 10] [--seconds 10] [--no-panel]

Chromium runs headless with --disable-gpu (software rendering), so the numbers are a floor for a
desktop browser and depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.support.pagekit import launch_chromium  # noqa: E402
from tests.support.serverproc import ServerProcess  # noqa: E402

SAMPLE_JS = """(ms) => new Promise(done => {
  const gaps = [], lat = [], longTasks = [];
  const obs = new PerformanceObserver(list => { for (const e of list.getEntries()) longTasks.push(e.duration); });
  obs.observe({ type: 'longtask', buffered: false });
  const s0 = { ...window.tickerStats };
  let prev = performance.now();
  const t0 = prev;
  const tick = setInterval(() => { if (window.tickerStats.latencyMs !== null) lat.push(window.tickerStats.latencyMs); }, 1000);
  const loop = (now) => {
    gaps.push(now - prev);
    prev = now;
    if (now - t0 < ms) return requestAnimationFrame(loop);
    clearInterval(tick);
    obs.disconnect();
    const s1 = window.tickerStats;
    done({ gaps, lat, longTasks, renders: s1.frames - s0.frames, applied: s1.applied - s0.applied,
           ignored: s1.ignored - s0.ignored, bars: s1.bars - s0.bars, elapsed: now - t0 });
  };
  requestAnimationFrame(loop);
})"""


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--rate", type=float, default=10.0, help="updates per second per symbol")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--no-panel", dest="panel", action="store_false", help="no detail panel (chart) open")
    args = ap.parse_args()
    symbols = [f"B{i:03d}" for i in range(args.rows)]
    with (
        ServerProcess(["--seed", "1", "--sim-rate", str(args.rate), "--symbols", ",".join(symbols)]) as srv,
        sync_playwright() as pw,
    ):
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        panel = f"&s={symbols[0]}&i=1m" if args.panel else ""
        page.goto(f"{srv.url}/?symbols={','.join(symbols)}{panel}")
        page.wait_for_function(
            "() => document.querySelectorAll('#rows tr.waiting').length === 0", timeout=20_000
        )
        if args.panel:
            page.wait_for_function(
                "() => document.querySelector('[data-testid=detail-chart]').dataset.state === 'ready'",
                timeout=20_000,
            )
        first_ms = page.evaluate(
            "performance.now()"
        )  # navigation start → every row shows a quote (upper bound)
        page.wait_for_timeout(2000)  # warm up
        r: dict[str, Any] = page.evaluate(SAMPLE_JS, args.seconds * 1000)
        candles = page.get_by_test_id("detail-chart").get_attribute("data-bars") if args.panel else None
        browser.close()
    secs = r["elapsed"] / 1000
    gaps = r["gaps"][1:]
    out = {
        "rows": args.rows,
        "rate_per_symbol": args.rate,
        "seconds": round(secs, 1),
        "all_rows_filled_after_ms": round(first_ms),
        "fps": round(len(gaps) / secs, 1),
        "frame_interval_ms": {
            "p50": round(pct(gaps, 0.5), 1),
            "p95": round(pct(gaps, 0.95), 1),
            "p99": round(pct(gaps, 0.99), 1),
            "max": round(max(gaps), 1),
        },
        "frames_over_50ms": sum(1 for g in gaps if g > 50),
        "long_tasks": len(r["longTasks"]),
        "renders": r["renders"],
        "quotes_applied_per_s": round(r["applied"] / secs),
        "quotes_per_render": round(r["applied"] / max(1, r["renders"]), 1),
        "stale_or_duplicate_ignored": r["ignored"],
        "latency_ms_avg_of_1s_means": round(sum(r["lat"]) / len(r["lat"]), 1) if r["lat"] else None,
        "latency_ms_worst_1s_mean": max(r["lat"]) if r["lat"] else None,
        "panel_chart": {
            "symbol": symbols[0],
            "candles_1m": int(candles or 0),
            "bar_updates_per_s": round(r["bars"] / secs, 1),
        }
        if args.panel
        else None,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
