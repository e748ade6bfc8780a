"""Day statistics on the quote (o, h, l, pc, vw) from real servers: worked out by the server for the
simulated market, taken from the provider for finnhub-rest, worked out once by the Redis publisher."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jsonschema
import pytest
from websockets.asyncio.client import connect

from tests.support.fakes.fake_finnhub_rest import FakeFinnhubRest
from tests.support.redisproc import RedisProcess, node, publisher
from tests.support.schemas import protocol_schemas
from tests.support.serverproc import serving
from tests.support.timing import eventually
from tests.support.wsclient import Inbox, ws_quotes

DAY = ("o", "h", "l", "pc", "vw")


def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(protocol_schemas()[1])


def per_symbol(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        out.setdefault(e["s"], []).append(e)
    return out


async def test_the_simulated_market_s_quotes_carry_the_session_s_statistics() -> None:
    async with serving("--symbols", "AAPL,KO", "--seed", "4", "--sim-rate", "20") as srv:
        got = await ws_quotes(
            srv.url,
            ["AAPL", "KO"],
            lambda es: all(len(v) >= 15 for v in per_symbol(es).values()) and len(es) > 30,
        )
        days = {}
        for sym in ("AAPL", "KO"):  # the session's 1d bar: the generated history, then the live trades
            async with httpx.AsyncClient() as http:
                body = (
                    await http.get(f"{srv.url}/api/bars", params={"symbol": sym, "interval": "1d"})
                ).json()
            days[sym] = body["bars"][-1]
    v = validator()
    v.validate({"type": "quotes", "data": got})
    for sym, entries in per_symbol(got).items():
        first = entries[0]
        opens = [e["o"] for e in entries]
        # The open is the server's first price until the history loads, then the session's open for good.
        assert len(set(opens)) <= 2 and opens == sorted(opens, key=opens.index), opens
        assert entries[-1]["o"] == days[sym]["o"], (entries[-1], days[sym])
        for e in entries:
            assert all(k in e for k in ("o", "h", "l", "pc")), e
            assert e["l"] <= e["p"] <= e["h"] and e["l"] <= e["o"] <= e["h"], e
            assert e["pc"] == first["pc"]  # one session, one previous close
            assert e["c"] == pytest.approx(e["p"] - e["pc"], abs=1e-6)  # c and cp relative to pc
            assert e["cp"] == pytest.approx((e["p"] - e["pc"]) / e["pc"] * 100, abs=1e-4)
        highs, lows = [e["h"] for e in entries], [e["l"] for e in entries]
        assert highs == sorted(highs) and lows == sorted(lows, reverse=True), sym
        assert max(highs) >= max(e["p"] for e in entries) and min(lows) <= min(e["p"] for e in entries)
        assert (
            "vw" in entries[-1] and entries[-1]["l"] <= entries[-1]["vw"] <= entries[-1]["h"]
        )  # volume grows


async def test_finnhub_rest_day_statistics_come_from_the_provider() -> None:
    async with (
        FakeFinnhubRest() as fake,
        serving(
            "--feed",
            "finnhub-rest",
            "--feed-url",
            fake.url,
            "--symbols",
            "AAPL",
            "--poll-rate",
            "20",
            "--poll-interval",
            "0.2",
            env={"FINNHUB_TOKEN": "test-token"},
        ) as srv,
    ):
        got = await ws_quotes(srv.url, ["AAPL"], lambda es: len(es) >= 3)
    validator().validate({"type": "quotes", "data": got})
    for e in got:  # the fake's day: h = c + 1.57, l = c - 1.06, o = c - 0.67, pc = 259.45
        assert (e["h"], e["l"], e["o"], e["pc"]) == (
            round(e["p"] + 1.57, 2),
            round(e["p"] - 1.06, 2),
            round(e["p"] - 0.67, 2),
            259.45,
        ), e
        assert "vw" not in e  # Finnhub's quote has no volume


async def test_through_redis_every_edge_node_gets_the_publisher_s_statistics() -> None:
    with RedisProcess() as r, publisher(r, "--symbols", "AAPL,MSFT"), node(r) as a:
        async with connect(a.ws_url + "?symbols=AAPL,MSFT") as wa:
            ra = Inbox(wa)
            await eventually(lambda: len(ra.entries()) > 20, 10.0, "quotes at the first node")
            later = time.monotonic()
            with node(r) as b:  # joins mid-session: on its own it would open at the first price it saw
                async with connect(b.ws_url + "?symbols=AAPL,MSFT") as wb:
                    rb = Inbox(wb)

                    def common() -> dict[tuple[str, int], tuple[Any, ...]] | None:
                        ea = {(e["s"], e["t"]): tuple(e.get(k) for k in DAY) for e in ra.entries(since=later)}
                        eb = {(e["s"], e["t"]): tuple(e.get(k) for k in DAY) for e in rb.entries()}
                        keys = ea.keys() & eb.keys()
                        if len(keys) < 20:
                            return None
                        assert all(ea[k] == eb[k] for k in keys), [
                            (ea[k], eb[k]) for k in keys if ea[k] != eb[k]
                        ]
                        return {k: ea[k] for k in keys}

                    both = await eventually(common, 10.0, "20 ticks at both nodes")
    opens = {s: o for (s, _), (o, *_rest) in both.items()}
    first = {e["s"]: e["o"] for e in ra.entries()}
    assert opens == first  # the session's open, from before the second node existed
    assert all(None not in day[:4] for day in both.values())
    validator().validate({"type": "quotes", "data": rb.entries()})
