"""Turn one run's raw measurements into the figures the report shows."""

from __future__ import annotations

from typing import Any

from bench.scenarios import Scenario


def percentile(hist: dict[int, float], q: float) -> int | None:
    """The smallest value with at least fraction ``q`` of the histogram's mass at or below it."""
    total = sum(hist.values())
    if total == 0:
        return None
    need = q * total
    seen = 0.0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= need:
            return value
    return max(hist)


def _merge(reports: list[dict[str, Any]], key: str) -> dict[int, float]:
    hist: dict[int, float] = {}
    for r in reports:
        for value, weight in r.get(key, []):
            hist[int(value)] = hist.get(int(value), 0.0) + weight
    return hist


def _latency(hist: dict[int, float]) -> dict[str, int | None]:
    return {
        "weight": round(sum(hist.values())),
        "p50": percentile(hist, 0.50),
        "p99": percentile(hist, 0.99),
        "p999": percentile(hist, 0.999),
        "max": max(hist) if hist else None,
    }


def wire_bytes_per_s(reports: list[dict[str, Any]]) -> float | None:
    """Bytes per second the clients read off their sockets (None: a result from before they counted them)."""
    if not reports or any("wire_bytes" not in r for r in reports):
        return None
    return sum(r["wire_bytes"] / r["wall"] for r in reports)


def server_counters(raw: dict[str, Any]) -> dict[str, float | None]:
    """ticker's own counts over the window from its /metrics (None each when not scraped or not exposed)."""
    before, after = raw.get("metrics_before"), raw.get("metrics_after")
    if not before or not after:
        return dict.fromkeys(("conflated", "sent", "bytes_per_s", "throttled"), None)

    def grown(name: str) -> float | None:
        return after[name] - before[name] if name in after and name in before else None

    sent_bytes = grown("ticker_bytes_sent_total")
    return {
        "conflated": grown("ticker_updates_conflated_total"),
        "sent": grown("ticker_updates_sent_total"),
        # the frames ticker handed to the sockets (quotes and bars; not replies or subscribe snapshots)
        "bytes_per_s": sent_bytes / raw["window"] if sent_bytes is not None and sent_bytes > 0 else None,
        "throttled": after.get("ticker_throttled_subscriptions"),  # a gauge: its value at the window's end
    }


def summarize(sc: Scenario, raw: dict[str, Any]) -> dict[str, Any]:
    """Figures of one run: rates at the clients, server CPU per update and frame, latency, memory, errors."""
    reports = raw["reports"]
    updates_per_s = sum(r["updates"] / r["wall"] for r in reports)
    frames_per_s = sum(r["frames"] / r["wall"] for r in reports)
    bars_per_s = sum(r.get("bars", 0) / r["wall"] for r in reports)  # ``bar`` messages, one per frame
    messages_per_s = updates_per_s + bars_per_s
    server_cores = raw["server_cpu_seconds"] / raw["window"]
    client_cores = sum(r["cpu"] / r["wall"] for r in reports)
    machine_cores = raw["machine_busy_seconds"] / raw["window"]
    hist = _merge(reports, "latency_ms")  # the real-time connections' (all of them without a delayed share)
    connected = sum(r["connected"] for r in reports)
    subscribed = sum(r["subscribed"] for r in reports)
    errors = {
        "connect_failed": sum(r["connect_failed"] for r in reports),
        "not_subscribed": connected - subscribed,
        "disconnects": sum(r["disconnects"] for r in reports),
        "server_errors": sum(r["server_errors"] for r in reports),
        "server_died": 0 if raw["server_alive"] else 1,
    }
    counters = server_counters(raw)
    conflated = None if counters["conflated"] is None else int(counters["conflated"])
    ours_sent = None if counters["sent"] is None else int(counters["sent"])
    throttled = None if counters["throttled"] is None else int(counters["throttled"])
    wire = wire_bytes_per_s(reports)
    offered = sc.offered_per_second()

    def per(rate: float) -> float | None:
        return server_cores / rate * 1e6 if rate > 0 else None

    return {
        "connections": connected,
        "connect_seconds": round(raw["connect_seconds"], 2),
        "subscribe_seconds": round(raw["subscribe_seconds"], 2),
        "window_s": round(raw["window"], 2),
        "updates_per_s": updates_per_s,
        "frames_per_s": frames_per_s,
        "updates_per_frame": updates_per_s / frames_per_s if frames_per_s else None,
        "offered_updates_per_s": offered,
        "delivered_ratio": updates_per_s / offered if offered else None,
        "server_cpu_cores": server_cores,
        "server_cpu_us_per_update": per(updates_per_s),
        "server_cpu_us_per_frame": per(frames_per_s),
        # The interpreter's share of it (user time); the rest is the kernel's (each send's TCP work on loopback).
        "server_user_share": raw["server_cpu_user_seconds"] / raw["server_cpu_seconds"]
        if raw.get("server_cpu_user_seconds") is not None and raw["server_cpu_seconds"] > 0
        else None,
        # Bars next to quotes (issue 14): the same CPU over quote updates plus ``bar`` messages.
        "bars_per_s": bars_per_s,
        "offered_bars_per_s": sc.offered_bars_per_second(),
        "messages_per_s": messages_per_s,
        "server_cpu_us_per_message": per(messages_per_s),
        "updates_per_server_cpu_s": updates_per_s / server_cores if server_cores > 0 else None,
        # Issue 16: bytes on the wire (clients' count and ticker's ``ticker_bytes_sent_total``), throttling.
        "wire_bytes_per_s": wire,
        "wire_bytes_per_update": wire / updates_per_s if wire is not None and updates_per_s > 0 else None,
        "server_bytes_per_s": counters["bytes_per_s"],
        "throttled_subscriptions": throttled,
        "server_cpu_wait_ratio": raw.get("server_wait_seconds", 0.0) / raw["window"],
        "client_cpu_cores": client_cores,
        "client_cpu_wait_ratio": sum(r.get("cpu_wait", 0.0) / r["wall"] for r in reports) / len(reports),
        "other_cpu_cores": max(0.0, machine_cores - server_cores - client_cores),
        "latency_ms": _latency(hist),
        "delayed": (
            {  # the delayed connections: their updates (also in updates_per_s) and t→arrival (≈ --delay)
                "updates_per_s": sum(r.get("delayed_updates", 0) / r["wall"] for r in reports),
                "latency_ms": _latency(_merge(reports, "delayed_latency_ms")),
            }
            if sc.delayed_share
            else None
        ),
        "rss_before_kib": raw["rss_before_kib"],
        "rss_after_kib": raw["rss_after_kib"],
        "rss_per_conn_kib": (raw["rss_after_kib"] - raw["rss_before_kib"]) / connected if connected else None,
        "conflated_updates": conflated,
        "server_reported_updates_sent": ours_sent,
        "errors": sum(errors.values()),
        "error_detail": errors,
    }
