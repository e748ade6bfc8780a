"""The bench's issue-16 variants (deltas, ``max_hz``): scenarios, requests, byte counts, figures and report."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson
import pytest

from bench.figures import summarize
from bench.loadgen import split_url
from bench.report import option_pairs, option_ratios, options_table, render, targets
from bench.scenarios import Scenario, scenarios
from bench.wsclient import Stats, Subscriber
from ticker.frames import ws_text_frame

OLD_NAMES = [
    "firehose",
    "crowd",
    "broad",
    "idle",
    "firehose-5ms",
    "firehose-2w",
    "crowd-2w",
    "crowd-jwt",
    "crowd-delayed",
    "crowd-bars",
]
VARIANTS = ["broad-delta", "crowd-1hz", "firehose-1hz"]
MEDIUM = ["medium"]  # issue 18: broad at 1,000 connections


def by_name(sizes: str) -> dict[str, Scenario]:
    return {s.name: s for s in scenarios(sizes)}


def test_variants_come_after_the_old_scenarios_which_keep_their_names() -> None:
    assert [s.name for s in scenarios("full")] == OLD_NAMES + VARIANTS + MEDIUM
    for sizes in ("quick", "smoke"):
        names = [s.name for s in scenarios(sizes)]
        assert names[-4:] == VARIANTS + MEDIUM, sizes


def test_medium_is_broad_at_a_thousand_connections_at_full_and_quick_sizes() -> None:
    for sizes in ("full", "quick"):
        sc = by_name(sizes)
        assert sc["medium"].conns == 1_000 and sc["medium"].rate == 10.0, sizes
        assert len(set(sc["medium"].symbols_for(3))) == 10, sizes
        assert sc["medium"].base_name is None and not sc["medium"].ours_only, sizes


@pytest.mark.parametrize("sizes", ["full", "quick", "smoke"])
def test_variants_differ_from_their_base_by_their_option_only(sizes: str) -> None:
    sc = by_name(sizes)
    for name, base, change in (
        ("broad-delta", "broad", {"delta": True}),
        ("crowd-1hz", "crowd", {"max_hz": 1.0}),
        ("firehose-1hz", "firehose", {"max_hz": 1.0}),
    ):
        v = sc[name]
        assert v.base_name == base and v.ours_only
        assert dataclasses.replace(sc[base], name=name, **change) == v
        assert sc[base].base_name is None
    for name in OLD_NAMES:
        if name in sc:
            assert sc[name].ws_path() == "/ws" and "max_hz" not in sc[name].subscribe_request(0)


def test_requests_and_path_carry_the_options() -> None:
    sc = by_name("full")
    assert sc["broad-delta"].ws_path() == "/ws?delta=1"
    assert sc["broad-delta"].subscribe_request(7) == {
        "op": "subscribe",
        "symbols": sc["broad"].symbols_for(7),
    }
    crowd = sc["crowd-1hz"].subscribe_request(3)
    assert crowd == {"op": "subscribe", "symbols": sc["crowd"].symbols_for(3), "max_hz": 1.0}
    assert orjson.loads(orjson.dumps(crowd))["max_hz"] == 1  # a JSON number, not a string
    assert "`/ws?delta=1`" in sc["broad-delta"].describe()
    assert '`"max_hz": 1`' in sc["firehose-1hz"].describe()


def test_offered_rate_is_capped_at_max_hz() -> None:
    sc = by_name("full")
    assert sc["firehose"].offered_per_second() == 100 * 100 * 100.0
    assert sc["firehose-1hz"].offered_per_second() == 100 * 100 * 1.0
    assert sc["crowd-1hz"].offered_per_second() == sc["crowd"].offered_per_second()  # it ticks at 1/s
    assert dataclasses.replace(sc["crowd"], max_hz=0.5).offered_per_second() == 10_000 * 20 * 0.5


def test_split_url_keeps_the_query() -> None:
    assert split_url("ws://127.0.0.1:8123/ws?delta=1") == ("127.0.0.1", 8123, "/ws?delta=1")
    assert split_url("ws://127.0.0.1:8123/ws") == ("127.0.0.1", 8123, "/ws")
    assert split_url("ws://localhost") == ("localhost", 80, "/")


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        pass


async def test_wire_bytes_count_everything_read_and_delta_entries_count_as_updates() -> None:
    stats = Stats()
    stats.expected = 1
    sub = Subscriber(stats, "127.0.0.1:1", "/ws?delta=1", b'{"op":"subscribe","symbols":["A","B"]}')
    transport = FakeTransport()
    sub.connection_made(transport)  # type: ignore[arg-type]
    assert transport.written[0].startswith(b"GET /ws?delta=1 HTTP/1.1\r\n")
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    t = int(time.time() * 1000) - 25
    ack = ws_text_frame(b'{"type":"subscribed","symbols":["A","B"],"rates":{}}')
    snap = ws_text_frame(
        f'{{"type":"snapshot","data":[{{"s":"A","p":1.5,"b":1.4,"t":{t},"q":1}},{{"s":"B","p":2,"t":{t},"q":1}}]}}'.encode()
    )
    sub.data_received(head + ack + snap)
    await sub.open
    assert sub.acked and stats.wire_bytes == len(head + ack + snap)
    stats.reset()
    assert stats.wire_bytes == 0
    # Deltas: B's entry left its time out (unchanged), A's dropped "b" (null); both are updates.
    deltas = ws_text_frame(
        f'{{"type":"quotes","data":[{{"s":"A","p":1.6,"b":null,"t":{t},"q":2}},{{"s":"B","p":2.1,"q":2}}]}}'.encode()
    )
    ping = b"\x89\x02hi"
    stream = deltas + ping + deltas
    for i in range(0, len(stream), 5):
        sub.data_received(stream[i : i + 5])
    assert stats.wire_bytes == len(stream)  # control frames and headers included
    assert stats.updates == 4 and stats.frames == 2
    assert sum(stats.latency.values()) == pytest.approx(4)
    assert all(24 <= ms <= 25 + 5000 for ms in stats.latency)  # sampled from A's "t" only


def report(updates: float, frames: float, wire: float | None, wall: float = 2.0) -> dict[str, Any]:
    r: dict[str, Any] = {
        "wall": wall,
        "cpu": 0.2,
        "updates": updates * wall,
        "frames": frames * wall,
        "connected": 10,
        "subscribed": 10,
        "connect_failed": 0,
        "disconnects": 0,
        "server_errors": 0,
        "latency_ms": [[5, updates * wall]],
    }
    if wire is not None:
        r["wire_bytes"] = wire * wall
    return r


def raw(
    reports: list[dict[str, Any]], cpu: float, sent_bytes: float | None, throttled: float = 0.0
) -> dict[str, Any]:
    m0 = m1 = None
    if sent_bytes is not None:
        base = {"ticker_updates_conflated_total": 3.0, "ticker_updates_sent_total": 10.0}
        m0 = {**base, "ticker_bytes_sent_total": 1000.0, "ticker_throttled_subscriptions": throttled}
        m1 = {
            "ticker_updates_conflated_total": 3.0,
            "ticker_updates_sent_total": 50.0,
            "ticker_bytes_sent_total": 1000.0 + sent_bytes,
            "ticker_throttled_subscriptions": throttled,
        }
    return {
        "reports": reports,
        "server_cpu_seconds": cpu,
        "machine_busy_seconds": cpu + 0.5,
        "window": 2.0,
        "server_wait_seconds": 0.0,
        "connect_seconds": 0.1,
        "subscribe_seconds": 0.1,
        "rss_before_kib": 1000,
        "rss_after_kib": 2000,
        "metrics_before": m0,
        "metrics_after": m1,
        "server_alive": True,
    }


def test_summarize_gives_bytes_on_the_wire_and_throttling() -> None:
    sc = by_name("quick")["crowd-1hz"]
    f = summarize(sc, raw([report(500, 50, 80_000), report(500, 50, 70_000)], 0.02, 300_000, 20_000))
    assert f["wire_bytes_per_s"] == pytest.approx(150_000)
    assert f["wire_bytes_per_update"] == pytest.approx(150)
    assert f["server_bytes_per_s"] == pytest.approx(150_000)  # 300,000 bytes over the 2 s window
    assert f["throttled_subscriptions"] == 20_000
    assert f["server_cpu_us_per_update"] == pytest.approx(0.01 / 1000 * 1e6)
    assert f["conflated_updates"] == 0 and f["server_reported_updates_sent"] == 40
    # a result from before the clients counted bytes, and a peer (no /metrics): no byte figures
    old = summarize(sc, raw([report(500, 50, None)], 0.02, None))
    assert old["wire_bytes_per_s"] is None and old["wire_bytes_per_update"] is None
    assert old["server_bytes_per_s"] is None and old["throttled_subscriptions"] is None
    assert old["conflated_updates"] is None


def result(runs: dict[str, tuple[float, float, float]]) -> dict[str, Any]:
    """A results JSON of ticker runs: scenario name → (updates/s, wire bytes/s, server CPU seconds)."""
    sc = by_name("quick")
    out = []
    for name, (updates, wire, cpu) in runs.items():
        r = raw([report(updates, updates / 2, wire)], cpu, wire * 2)
        out.append(
            {"scenario": dataclasses.asdict(sc[name]), "server": "ours", "figures": summarize(sc[name], r)}
        )
    machine = {"cpus": 2, "cpu_model": "x", "kernel": "k", "python": "3.11", "node": None, "commit": "abc"}
    return {
        "started": "20260101T000000Z",
        "command": "make bench QUICK=1",
        "duration_seconds": 10.0,
        "machine": {**machine, "loadavg_start": [0.5, 0.5, 0.5]},
        "runs": out,
    }


def test_report_sets_each_variant_beside_its_base_with_ratios() -> None:
    res = result(
        {
            "crowd": (20_000, 3_600_000, 0.3),
            "broad": (20_000, 3_400_000, 0.2),
            "broad-delta": (20_000, 2_040_000, 0.22),
            "crowd-1hz": (19_000, 3_000_000, 0.06),
        }
    )
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for r in res["runs"]:
        by.setdefault(r["scenario"]["name"], {})[r["server"]] = r
    assert option_pairs(by) == [("broad", "broad-delta"), ("crowd", "crowd-1hz")]
    q = option_ratios(by["broad"]["ours"]["figures"], by["broad-delta"]["ours"]["figures"])
    assert q["wire_bytes_per_s"] == pytest.approx(0.6) and q["server_bytes_per_s"] == pytest.approx(0.6)
    assert q["server_cpu_us_per_update"] == pytest.approx(1.1)

    table = options_table(by)
    rows = [line for line in table if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| broad", "| broad-delta", "| crowd", "| crowd-1hz"]
    assert "| broad-delta | `?delta=1` | 20,000 | 100 % | 1,992 | 102.0 |" in table[3]
    assert "| crowd-1hz | `max_hz` 1 |" in table[5]
    assert "- broad-delta against broad: wire bytes/s 0.60×, bytes per update 0.60×" in "\n".join(table)
    assert "- crowd-1hz against crowd: updates/s 0.95×, server cores 0.20×" in "\n".join(table)

    got = {what: (measured, met) for what, measured, met in targets(by)}
    delta = got["broad-delta (`?delta=1`): bytes per second on the wire with deltas, against broad without"]
    assert delta == (
        "1,992 KiB/s, 102.0 bytes/update against 3,320 KiB/s, 170.0 bytes/update: 0.60× the bytes per second",
        None,
    )
    rate = got["crowd-1hz (`max_hz` 1): server CPU per delivered update stated"]
    assert rate[0].startswith("1.58 µs per update, 19,000 updates/s, 0.030 cores (crowd: 7.50 µs,")

    text = render(res, "x.json", chart=False)
    assert "### Deltas and maximum rates" in text and "### broad-delta" in text


def test_report_without_the_base_run_says_so() -> None:
    res = result({"firehose-1hz": (2_000, 320_000, 0.3)})
    by = {"firehose-1hz": {"ours": res["runs"][0]}}
    table = options_table(by)
    assert "- firehose-1hz: firehose not run, no ratio." in table
    [(_, measured, _)] = [t for t in targets(by) if t[0].startswith("firehose-1hz")]
    assert "(firehose:" not in measured and measured.startswith("75.00 µs per update")
