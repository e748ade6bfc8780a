"""Operations by role with real processes: a ``ticker feed --metrics-port`` publisher and an edge node on a real
Redis each expose their ``ticker_role``, and ``ticker_ready`` agrees with ``/readyz`` in each, ready and not (a
standby publisher is ready, as a standby);
log lines name the pid and the worker (``--log-format json``, ``--workers``); ``/metrics`` is not an INFO line."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import partial

import pytest

from tests.support.redisproc import RedisProcess, node, publisher
from tests.support.serverproc import ServerProcess, scrape
from tests.support.timing import eventually_sync, timeout
from ticker.cli.feed import STANDBY_REASON


@pytest.fixture
def redis_srv() -> Iterator[RedisProcess]:
    with RedisProcess() as r:
        yield r


def _readyz(base: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=timeout(5)) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _both(base: str) -> tuple[bool, bool]:
    """(``/readyz`` answers 200, ``ticker_ready`` is 1), read one after the other."""
    return _readyz(base)[0] == 200, scrape(base)["ticker_ready"] == 1.0


def _both_are(base: str, ready: bool) -> bool:
    return _both(base) == (ready, ready)


def _roles(base: str) -> dict[str, float]:
    return {k: v for k, v in scrape(base).items() if k.startswith("ticker_role{")}


def test_ready_gauge_agrees_with_readyz_in_the_publisher_and_the_edge(redis_srv: RedisProcess) -> None:
    with (
        publisher(redis_srv, "--metrics-port", "0", "--log-format", "json") as feed,
        node(redis_srv) as edge,
    ):
        feed_url = f"http://127.0.0.1:{feed.metrics_port}"
        for base, role in ((feed_url, "publisher"), (edge.url, "edge")):
            eventually_sync(partial(_both_are, base, True), 10, f"{base} ready in /readyz and the gauge")
            assert _roles(base) == {f'ticker_role{{role="{role}"}}': 1.0}
        redis_srv.kill()
        for base in (feed_url, edge.url):
            eventually_sync(partial(_both_are, base, False), 10, f"{base} not ready in both")
            assert _readyz(base)[1]["reason"] == "broker redis is down"
        # the edge's access log: the /readyz probes above are INFO lines, the scrapes are not logged at INFO
        eventually_sync(lambda: "GET /readyz" in edge.output(), what="an access line of /readyz")
        assert "GET /metrics" not in edge.output()
        lines = [json.loads(line) for line in feed.lines]  # --log-format json: every line is one object
    assert lines and all(set(o) >= {"time", "level", "logger", "message", "pid", "worker"} for o in lines)
    assert feed.proc is not None and {o["pid"] for o in lines} == {feed.proc.pid}
    assert {o["worker"] for o in lines} == {None}
    assert any(o["message"].startswith("ticker feed running") for o in lines)


def test_a_standby_publisher_is_ready_as_standby(redis_srv: RedisProcess) -> None:
    with (
        publisher(redis_srv, "--metrics-port", "0") as active,
        publisher(redis_srv, "--metrics-port", "0") as standby,
    ):
        urls = {
            name: f"http://127.0.0.1:{p.metrics_port}"
            for name, p in (("active", active), ("standby", standby))
        }
        eventually_sync(partial(_both_are, urls["active"], True), 10, "the active publisher ready")
        assert scrape(urls["active"])["ticker_publisher_active"] == 1.0
        assert _readyz(urls["standby"]) == (200, {"status": "ready", "reason": STANDBY_REASON})
        metrics = scrape(urls["standby"])
        assert metrics["ticker_ready"] == 1.0 and metrics["ticker_publisher_active"] == 0.0
        assert _roles(urls["standby"]) == {'ticker_role{role="publisher"}': 1.0}


def test_workers_name_themselves_in_every_line() -> None:
    with ServerProcess(
        ["--host", "127.0.0.1", "--workers", "2", "--seed", "1", "--log-format", "json"]
    ) as srv:

        def listening() -> dict[int, int] | None:
            lines = [json.loads(line) for line in srv.lines]
            found = {o["worker"]: o["pid"] for o in lines if "listening on http://" in o["message"]}
            return found if len(found) == 2 else None

        workers = eventually_sync(listening, 15, "both workers' listening lines")
    assert set(workers) == {0, 1} and len(set(workers.values())) == 2
    assert srv.proc is not None and srv.proc.pid not in workers.values()
    supervisor = [json.loads(line) for line in srv.lines if '"ticker supervisor' in line]
    assert supervisor and all(o["worker"] is None and o["pid"] == srv.proc.pid for o in supervisor)
