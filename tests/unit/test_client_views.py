"""What the Python client asks of its stream (max_hz, fields, delta): the checks, the /ws URL, the requests it
sends (by rate after a reconnect), the options exchange, and the full quotes it hands out from deltas."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import aiohttp
import orjson
import pytest

from tests.support.timing import eventually
from ticker.client import BadRequestError, Quote, TickerClient
from ticker.client.link import ServerLink, Subscriptions
from ticker.client.streamopts import check_fields, check_max_hz, query_params, rate_groups

Msg = dict[str, Any]


def test_max_hz_is_a_finite_number_of_at_least_a_tenth():
    assert check_max_hz(None) is None
    assert check_max_hz(2) == 2.0 and check_max_hz(0.1) == 0.1
    for bad in (0.05, 0, -1, float("inf"), float("nan"), True, "2"):
        with pytest.raises(BadRequestError):
            check_max_hz(bad)


def test_fields_are_known_names_with_p_in_the_entrys_order():
    assert check_fields(None) is None
    assert check_fields(["a", "p", "b", "p"]) == ("p", "b", "a")
    assert check_fields("t,vw,p") == ("p", "vw", "t")
    with pytest.raises(BadRequestError, match="unknown fields: x, zz"):
        check_fields(["p", "zz", "x"])
    with pytest.raises(BadRequestError, match="must include p"):
        check_fields(["b", "a"])
    with pytest.raises(BadRequestError):
        check_fields([])


def test_query_params_and_rate_groups():
    assert query_params(None, False) == {}
    assert query_params(("p", "b"), True) == {"fields": "p,b", "delta": "1"}
    assert rate_groups(["A", "B", "C", "D"], {"A": 2.0, "C": 0.5, "D": 2.0}) == [
        (["B"], None),
        (["C"], 0.5),
        (["A", "D"], 2.0),
    ]
    assert rate_groups(["A"], {}) == [(["A"], None)]


def test_the_ws_url_carries_the_connection_options():
    assert TickerClient("ws://h:1/ws", ["AAPL"])._ws_url() == "ws://h:1/ws"
    client = TickerClient("ws://h:1/ws?x=1", ["AAPL"], fields=["b", "p"], delta=True, max_hz=2)
    assert client._ws_url() == "ws://h:1/ws?x=1&fields=p,b&delta=1"
    assert (client.fields, client.delta, client.max_hz, client.rates) == (("p", "b"), True, 2.0, {})
    for own in ("max_hz=2", "fields=p", "delta=1"):
        with pytest.raises(ValueError, match="as arguments of the client"):
            TickerClient(f"ws://h:1/ws?{own}")
    with pytest.raises(BadRequestError):
        TickerClient("ws://h:1/ws", max_hz=0.01)
    with pytest.raises(BadRequestError):
        TickerClient("ws://h:1/ws", fields=["b"])


class FakeServer:
    """Stands in for the socket and for a server holding rates: answers subscribe and options requests as the
    contract says (``subscribed`` with ``rates``, a snapshot; ``options`` then a snapshot), then the pong."""

    def __init__(self) -> None:
        self.link: ServerLink | None = None
        self.sent: list[Msg] = []
        self.rates: dict[str, float | None] = {}  # symbol -> max_hz asked (None: unthrottled)
        self.options: Msg = {"fields": None, "delta": False}  # in force; a key left out keeps its value
        self.q = 0

    def wire(self, client: TickerClient) -> ServerLink:
        self.link = ServerLink(
            cast(aiohttp.ClientWebSocketResponse, self), client._subs, 10, 10, client._unsolicited
        )
        return self.link

    def entry(self, symbol: str) -> Msg:
        self.q += 1
        return {"s": symbol, "p": 10.0, "b": 9.0, "a": 11.0, "v": 5, "t": 1000 + self.q, "q": self.q}

    def answer(self, msg: Msg) -> list[Msg]:
        if msg["op"] == "ping":
            return [{"type": "pong", "id": msg["id"]}]
        if msg["op"] == "subscribe":
            for s in msg["symbols"]:
                self.rates[s] = msg.get("max_hz")
            rates = {s: r for s, r in self.rates.items() if r is not None}
            return [
                {"type": "subscribed", "symbols": sorted(self.rates), "delayed": [], "rates": rates},
                {"type": "snapshot", "data": [self.entry(s) for s in msg["symbols"]]},
            ]
        if msg["op"] == "options":
            self.options.update({k: v for k, v in msg.items() if k != "op"})
            return [
                {"type": "options", **self.options},
                {
                    "type": "snapshot",
                    "data": [self.restricted(s, self.options["fields"]) for s in sorted(self.rates)],
                },
            ]
        return []

    def restricted(self, symbol: str, fields: list[str] | None) -> Msg:
        full = self.entry(symbol)
        return full if fields is None else {k: v for k, v in full.items() if k in {"s", "t", "q", *fields}}

    async def send_str(self, data: str) -> None:
        msg = orjson.loads(data)
        self.sent.append(msg)
        assert self.link is not None
        for reply in self.answer(msg):
            asyncio.get_running_loop().call_soon(self.link.handle, orjson.dumps(reply).decode())

    def requests(self) -> list[Msg]:
        """What the client sent, pings without their ids."""
        return [{"op": "ping"} if m["op"] == "ping" else m for m in self.sent]


async def connected(client: TickerClient, server: FakeServer) -> asyncio.Task[None]:
    """Run the client's writer on a new connection to ``server``; return once it resubscribed its set."""
    client._subs.new_connection()
    before = client.connections
    task = asyncio.create_task(client._writer(server.wire(client), before > 0))
    await eventually(lambda: client.connections > before, 5.0, "the resubscription")
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_subscribe_asks_each_calls_rate_and_a_reconnect_asks_them_again_by_rate():
    client = TickerClient("ws://h/ws", ["AAPL", "MSFT"], max_hz=2)
    first = FakeServer()
    writer = await connected(client, first)
    await client.subscribe("NVDA")  # the client's default
    await client.subscribe("TSLA", max_hz=None)  # unthrottled
    await client.subscribe("MSFT", max_hz=0.5)  # again, at another rate
    await stop(writer)
    assert first.requests() == [
        {"op": "subscribe", "symbols": ["AAPL", "MSFT"], "max_hz": 2.0},
        {"op": "ping"},
        {"op": "subscribe", "symbols": ["NVDA"], "max_hz": 2.0},
        {"op": "ping"},
        {"op": "subscribe", "symbols": ["TSLA"]},
        {"op": "ping"},
        {"op": "subscribe", "symbols": ["MSFT"], "max_hz": 0.5},
        {"op": "ping"},
    ]
    assert client.rates == {"AAPL": 2.0, "MSFT": 0.5, "NVDA": 2.0}
    # The re-rated symbol's snapshot replaced its value and was handed out.
    assert [q.symbol for q in iter(client._subs.buffer.pop, None)] == ["AAPL", "MSFT", "NVDA", "TSLA", "MSFT"]

    second = FakeServer()  # a reconnect: one subscribe per rate, then one ping
    writer = await connected(client, second)
    await stop(writer)
    assert second.requests() == [
        {"op": "subscribe", "symbols": ["TSLA"]},
        {"op": "subscribe", "symbols": ["MSFT"], "max_hz": 0.5},
        {"op": "subscribe", "symbols": ["AAPL", "NVDA"], "max_hz": 2.0},
        {"op": "ping"},
    ]
    assert client.symbols == {"AAPL", "MSFT", "NVDA", "TSLA"}
    assert client.rates == {"AAPL": 2.0, "MSFT": 0.5, "NVDA": 2.0}
    with pytest.raises(BadRequestError):
        client.max_hz = 0
    client.max_hz = None  # a new default; an unsubscribed symbol's rate is forgotten
    writer = await connected(client, second)
    await client.subscribe("AMD")
    await client.unsubscribe("AAPL")
    await stop(writer)
    assert second.requests()[-4] == {"op": "subscribe", "symbols": ["AMD"]}
    assert client._subs.wanted_hz == {"MSFT": 0.5, "NVDA": 2.0}


async def test_set_options_sends_the_options_op_and_the_client_merges_deltas_into_full_quotes():
    client = TickerClient("ws://h/ws", ["AAPL"])
    server = FakeServer()
    writer = await connected(client, server)
    with pytest.raises(BadRequestError):
        await client.set_options()  # nothing to change: nothing sent
    with pytest.raises(BadRequestError, match="must include p"):
        await client.set_options(fields=["b"])
    await client.set_options(fields=["b", "p"], delta=True)
    assert server.requests()[-2:] == [{"op": "options", "fields": ["p", "b"], "delta": True}, {"op": "ping"}]
    assert (client.fields, client.delta) == (("p", "b"), True)
    assert client._ws_url() == "ws://h/ws?fields=p,b&delta=1"  # the next connection asks the same
    snap = client.latest["AAPL"]  # the snapshot under the new options replaced the value: no ask any more
    assert (snap.price, snap.bid, snap.ask, snap.volume) == (10.0, 9.0, None, None)
    link = server.link
    assert link is not None
    link.handle(
        orjson.dumps({"type": "quotes", "data": [{"s": "AAPL", "p": 10.5, "q": snap.seq + 1}]}).decode()
    )
    merged = client.latest["AAPL"]
    assert (merged.price, merged.bid, merged.ts_ms, merged.seq) == (10.5, 9.0, snap.ts_ms, snap.seq + 1)
    link.handle(
        orjson.dumps({"type": "quotes", "data": [{"s": "AAPL", "b": None, "q": snap.seq + 2}]}).decode()
    )
    assert client.latest["AAPL"].bid is None and client.latest["AAPL"].price == 10.5
    await client.set_options(fields=None)  # delta stays
    assert server.requests()[-2]["fields"] is None and "delta" not in server.requests()[-2]
    assert (client.fields, client.delta) == (None, True) and client.latest["AAPL"].ask == 11.0
    await stop(writer)


def test_a_delta_connection_hands_out_merged_quotes_and_no_snapshot_repeats():
    subs = Subscriptions(["AAPL"], buffer_limit=100, fields=None, delta=True)
    full = {"s": "AAPL", "p": 1.0, "b": 0.9, "a": 1.1, "v": 10, "t": 5, "q": 7}
    subs.apply([full], snapshot=True)
    subs.apply([{"s": "AAPL", "v": 11, "t": 6, "q": 8}, {"s": "NVDA", "p": 1.0, "t": 1, "q": 1}])
    subs.apply([{**full, "v": 11, "t": 6, "q": 8}], snapshot=True)  # a re-rated symbol's snapshot: a repeat
    got: list[Quote] = list(iter(subs.buffer.pop, None))
    assert [(q.seq, q.volume, q.bid) for q in got] == [(7, 10, 0.9), (8, 11, 0.9)]
    assert "NVDA" not in subs.latest and subs.merger.state("NVDA") is None


def test_subscribed_rates_name_only_confirmed_throttled_symbols():
    subs = Subscriptions(["AAPL", "MSFT"], buffer_limit=10)
    link = ServerLink(cast(aiohttp.ClientWebSocketResponse, None), subs, 10, 10, lambda err: None)
    send: Callable[[Msg], None] = lambda m: link.handle(orjson.dumps(m).decode())  # noqa: E731
    send(
        {
            "type": "subscribed",
            "symbols": ["AAPL", "MSFT"],
            "delayed": [],
            "rates": {"AAPL": 1, "X": 2, "MSFT": "y"},
        }
    )
    assert subs.rates == {"AAPL": 1.0}
    send({"type": "subscribed", "symbols": ["AAPL", "MSFT"], "delayed": []})  # an older server: none
    assert subs.rates == {}
    send({"type": "options", "fields": ["p", 3], "delta": True})  # malformed: ignored
    assert (subs.fields, subs.delta) == (None, False)
