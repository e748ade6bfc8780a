"""The deploy files against live servers: what the dashboard and the alerts read is exposed, the exposition
passes `promtool check metrics`, and a real Prometheus scrapes a real ticker and evaluates the rules."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import signal
import subprocess
import time
import urllib.request
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import websockets
import yaml
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.support.promql import (
    ALERTS,
    BROKER_ONLY,
    PROM_CONFIG,
    PROMETHEUS_SYNTHETIC,
    dashboard_exprs,
    deploy_metric_names,
    documented_metrics,
    load_dashboard,
    load_rules,
    metric_names,
    require_binary,
)
from tests.support.serverproc import ServerProcess
from tests.support.system import free_port
from tests.support.timing import eventually, eventually_sync, timeout

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM"]
SERVER_ARGS = [
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--seed",
    "7",
    "--sim-rate",
    "20",
    "--symbols",
    ",".join(SYMBOLS),
]


@pytest.fixture
def ticker() -> Iterator[str]:
    """A real `ticker serve` on an ephemeral loopback port; yields host:port, then stops it with SIGTERM."""
    srv = ServerProcess(SERVER_ARGS).start()
    try:
        yield f"127.0.0.1:{srv.port}"
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0, srv.output()  # docs/operations.md: exit 0 within 5 s
    finally:
        srv.stop()


async def _count_quotes(ws: Any, counter: list[int], first: asyncio.Event) -> None:
    """Read every frame, adding the number of Q entries of snapshot and quotes frames to ``counter[0]``."""
    async for raw in ws:
        msg = orjson.loads(raw)
        if msg["type"] in ("snapshot", "quotes"):
            counter[0] += len(msg["data"])
            if msg["type"] == "quotes":
                first.set()


@contextlib.asynccontextmanager
async def _subscriber(addr: str) -> AsyncIterator[list[int]]:
    """A WebSocket client subscribed to SYMBOLS that reads everything; yields its running count of Q entries."""
    async with websockets.connect(f"ws://{addr}/ws?symbols={','.join(SYMBOLS)}") as ws:
        counter, first = [0], asyncio.Event()
        reader = asyncio.create_task(_count_quotes(ws, counter, first))
        try:
            await asyncio.wait_for(first.wait(), timeout=timeout(10))
            yield counter
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await reader


async def _scrape(addr: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"http://{addr}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return await resp.text()


def _exposed_names(family: Metric) -> set[str]:
    """The sample names a family declares, whether or not it has samples yet (labelled children come later)."""
    if family.type == "counter":
        return {family.name + "_total"}
    if family.type == "histogram":
        return {family.name + s for s in ("_bucket", "_sum", "_count")}
    return {family.name}


async def _scrape_after_activity(addr: str) -> str:
    """Scrape once a client has subscribed, received quotes, caused a client error and closed."""
    async with _subscriber(addr):
        async with websockets.connect(f"ws://{addr}/ws") as bad:
            await bad.send("{not json")
            reply = orjson.loads(await asyncio.wait_for(bad.recv(), timeout=timeout(5)))
            assert reply["type"] == "error" and reply["code"] == "bad_json"

        async def after_the_close() -> str | None:
            text = await _scrape(addr)
            return text if 'ticker_connections_closed_total{reason="client",transport="ws"}' in text else None

        return await eventually(after_the_close, 5.0, "the bad client's close in the metrics", interval=0.1)


async def test_every_metric_the_dashboard_and_alerts_use_is_exposed(ticker: str) -> None:
    families = {f.name: f for f in text_string_to_metric_families(await _scrape_after_activity(ticker))}
    exposed = {n for f in families.values() for n in _exposed_names(f)}
    allowed = set(BROKER_ONLY) | set(PROMETHEUS_SYNTHETIC)
    used = deploy_metric_names()
    missing = {
        name: sorted(where) for name, where in used.items()
        if name not in exposed and not any(name.startswith(a) for a in allowed)
    }  # fmt: skip
    assert not missing, f"used by the deploy files but not exposed by ticker: {missing}"
    assert len(used) >= 25  # the extraction found the dashboard's and rules' names, not nothing
    # the allowlist stays honest: it names only metrics ticker does not expose yet
    assert not {n for n in BROKER_ONLY if n.removesuffix("_total") in families}, "drop them from BROKER_ONLY"
    # labels the dashboard's legends print exist on the series it reads (where samples exist)
    samples = {s.name: set(s.labels) for f in families.values() for s in f.samples}
    checked = 0
    for title, expr in dashboard_exprs(load_dashboard()):
        names = metric_names(expr)
        if not all(n in samples for n in names):
            continue  # a labelled family without children yet (feed errors, broker): no labels to compare
        legends = [t["legendFormat"] for p in load_dashboard()["panels"] for t in p.get("targets", [])
                   if t["expr"] == expr]  # fmt: skip
        have = {"instance", "job"}.union(*(samples[n] for n in names))
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", " ".join(legends)):
            assert label in have, f"{title}: legend label {label!r} not on {sorted(names)}"
        checked += 1
    assert checked >= 20


async def test_live_exposition_passes_promtool_and_has_help_units_and_buckets(ticker: str) -> None:
    promtool = require_binary("promtool")
    text = await _scrape_after_activity(ticker)
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(text.encode()), timeout=timeout(60))
    assert proc.returncode == 0 and not out.strip() and not err.strip(), (out + err).decode()
    families = [f for f in text_string_to_metric_families(text) if f.name.startswith("ticker_")]
    for f in families:
        assert f.documentation.strip(), f"{f.name} has no HELP text"
        if f.type == "histogram":
            assert f.name.endswith("_seconds"), f"{f.name}: durations are in seconds"
            bounds = sorted({float(s.labels["le"]) for s in f.samples if s.name.endswith("_bucket")})
            if bounds:
                assert bounds[0] < 0.001 and bounds[-2] >= 1.0 and bounds[-1] == math.inf, (f.name, bounds)
    assert any(f.name == "ticker_bytes_sent" and f.type == "counter" for f in families)


async def test_metrics_reference_in_the_docs_matches_the_exposition(ticker: str) -> None:
    families = list(text_string_to_metric_families(await _scrape_after_activity(ticker)))
    documented = documented_metrics()
    exposed = {f.name + "_total" if f.type == "counter" else f.name: f for f in families}
    assert set(exposed) - set(documented) == set(), "exposed but missing from docs/operations.md"
    assert set(documented) - set(exposed) == set(BROKER_ONLY), "documented but not exposed"
    for name, f in exposed.items():
        kind, labels = documented[name]
        assert kind == f.type, (name, kind, f.type)
        if f.samples:
            have = set().union(*(set(s.labels) for s in f.samples)) - {"le"}
            assert labels == have, (name, labels, have)


def _prometheus_config(tmp_path: Path, target: str) -> Path:
    """The shipped example config, pointed at ``target``, scraping and evaluating every second."""
    cfg = yaml.safe_load(PROM_CONFIG.read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    cfg.pop("alerting", None)  # no Alertmanager here
    cfg["rule_files"] = [str(ALERTS)]
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "ticker"]
    job["static_configs"] = [{"targets": [target]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start_prometheus(
    binary: str, config: Path, data: Path, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Start Prometheus on a free loopback port and wait until it is ready; retry on a lost port race."""
    for _attempt in range(3):
        port = free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=out, stderr=out,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}"

        def ready_or_exited(proc: subprocess.Popen[bytes] = proc, url: str = url) -> str | None:
            if proc.poll() is not None:
                return "exited"
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/-/ready", timeout=timeout(1)) as resp,
            ):
                if resp.status == 200:
                    return "ready"
            return None

        with contextlib.suppress(AssertionError):  # not ready in time: reported below with its log
            if eventually_sync(ready_or_exited, 15, "prometheus to be ready", interval=0.1) == "ready":
                return proc, url
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            pytest.fail(f"prometheus was not ready within 15 s:\n{log.read_text()}")
        if "address already in use" not in log.read_text():
            pytest.fail(f"prometheus exited with {proc.returncode}:\n{log.read_text()}")
    pytest.fail("prometheus found no free port in 3 tries")


@contextlib.contextmanager
def _prometheus(tmp_path: Path, config: Path) -> Iterator[str]:
    """A real, ready Prometheus on loopback with temporary storage; yields its base URL."""
    binary = require_binary("prometheus")
    proc, url = _start_prometheus(binary, config, tmp_path / "data", tmp_path / "prometheus.log")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=timeout(10))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _get(http: aiohttp.ClientSession, url: str, **params: str) -> Any:
    async with http.get(url, params=params) as resp:
        body = await resp.json()
        assert resp.status == 200 and body["status"] == "success", body
        return body["data"]


async def _query(http: aiohttp.ClientSession, prom: str, query: str) -> float | None:
    """The single value of an instant query, or None while it has no result."""
    result = (await _get(http, f"{prom}/api/v1/query", query=query))["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


async def _until(what: str, probe: Any) -> Any:
    """Poll ``probe()`` every 0.25 s until it returns something truthy; fail with ``what`` after 30 s (scaled)."""
    return await eventually(probe, 30.0, what, interval=0.25)


@pytest.mark.timeout(60)
async def test_real_prometheus_scrapes_ticker_and_evaluates_the_rules(ticker: str, tmp_path: Path) -> None:
    async with _subscriber(ticker) as received, aiohttp.ClientSession() as http:
        with _prometheus(tmp_path, _prometheus_config(tmp_path, ticker)) as prom:
            up = 'up{job="ticker"}'
            assert await _until("a scrape of ticker", lambda: _query(http, prom, up)) == 1.0

            async def positive(query: str) -> Any:
                value = await _query(http, prom, query)
                return value if value is not None and value > 0 and not math.isnan(value) else None

            rate_q = "sum(rate(ticker_updates_sent_total[5s]))"
            await _until("a positive update rate", lambda: positive(rate_q))
            p99 = await _until(
                "a fan-out p99",
                lambda: positive(
                    "histogram_quantile(0.99, sum by (le) (rate(ticker_fanout_latency_seconds_bucket[5s])))"
                ),
            )
            assert 0 < p99 <= 10.0  # within the finite buckets
            # once the 5 s window is full of scrapes, Prometheus's rate is what this one client receives
            count0, time0 = received[0], time.monotonic()
            await asyncio.sleep(5)  # the scenario: a 5 s measuring window, compared with Prometheus's rate
            client_rate = (received[0] - count0) / (time.monotonic() - time0)
            rate = await _query(http, prom, rate_q)
            assert rate is not None and client_rate > 20, (rate, client_rate)  # 8 symbols at 20 ticks/s
            assert 0.6 < rate / client_rate < 1.4, (rate, client_rate)
            # and the counter it scraped never exceeds what the client got (one flush may be in flight)
            sent = await _query(http, prom, "ticker_updates_sent_total")
            assert sent is not None and 0 < sent <= received[0] + len(SYMBOLS), (sent, received[0])

            assert await _query(http, prom, "ticker_ready") == 1.0

            async def evaluated() -> list[dict[str, Any]] | None:
                groups = (await _get(http, f"{prom}/api/v1/rules", type="alert"))["groups"]
                rules: list[dict[str, Any]] = [r for g in groups for r in g["rules"]]
                return rules if rules and all(r["health"] != "unknown" for r in rules) else None

            rules = await _until("every rule evaluated", evaluated)
            assert sorted(r["name"] for r in rules) == sorted(r["alert"] for r in load_rules())
            assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
            active = {a["labels"]["alertname"] for a in (await _get(http, f"{prom}/api/v1/alerts"))["alerts"]}
            healthy = {"TickerDown", "TickerNotReady", "TickerFeedDown", "TickerNoUpdatesFlowing",
                       "TickerUpdatesNotDelivered"}  # fmt: skip
            assert not active & healthy, active
