"""The client's bar subscriptions without a socket: decoding, the upsert-by-``t`` series and what is handed out,
and the client's ``subscribe_bars``/``unsubscribe_bars``, errors and resubscription over a fake link."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import aiohttp
import orjson
import pytest

from tests.support.timing import eventually, timeout
from ticker.client import (
    BadRequestError,
    Bar,
    BarSubscription,
    Event,
    EventKind,
    ForbiddenSymbolError,
    InvalidSymbolError,
    ServerError,
    TickerClient,
    TooManyBarSubscriptionsError,
    UnknownSymbolError,
)
from ticker.client.barstream import decode_bar
from ticker.client.link import ServerLink

MIN = 60_000
T0 = 1_764_600_000_000  # a minute boundary


def wire(t: int, c: float, v: float = 100) -> dict[str, Any]:
    return {"t": t, "o": c, "h": c + 1, "l": c - 1, "c": c, "v": v}


def bar(t: int, c: float, v: float = 100) -> Bar:
    return Bar(t, c, c + 1, c - 1, c, v)


def drain(sub: BarSubscription) -> list[Bar]:
    """The bars waiting for the loop, taken without waiting."""

    async def take() -> list[Bar]:
        out: list[Bar] = []
        while sub.pending:
            out.append(await sub.__anext__())
        return out

    return asyncio.run(take())


# -- decoding ----------------------------------------------------------------------------------------
def test_a_bar_decodes_from_its_wire_form_and_malformed_ones_raise():
    assert decode_bar(wire(T0, 10.5)) == Bar(T0, 10.5, 11.5, 9.5, 10.5, 100)
    assert decode_bar({"t": T0, "o": 1, "h": 2, "l": 1, "c": 2}) == Bar(T0, 1, 2, 1, 2, 0)  # no v: 0
    for bad in ([T0, 1, 2], {"t": "1", "o": 1, "h": 1, "l": 1, "c": 1}, {**wire(T0, 1), "c": None}):
        with pytest.raises(ValueError):
            decode_bar(bad)
    with pytest.raises(ValueError):
        decode_bar({**wire(T0, 1), "v": True})  # a bool is not a number here
    with pytest.raises(ValueError):
        decode_bar({**wire(T0, 1), "t": 1.5})


# -- the series and what is handed out --------------------------------------------------------------
def test_history_then_updates_upserted_by_t():
    sub = BarSubscription("AAPL", "1m", 10)
    sub.load([wire(T0 + MIN, 11), wire(T0, 10), {"t": "bad"}], delayed=False)  # sorted; malformed skipped
    assert sub.bars == [bar(T0, 10), bar(T0 + MIN, 11)] and sub.loads == 1 and not sub.delayed
    sub.update(wire(T0 + MIN, 12))  # the current bar moved
    sub.update(wire(T0 + 2 * MIN, 13))  # a new one opened
    sub.update(wire(T0 + 2 * MIN, 13))  # a repeat: nothing new
    sub.update({"t": T0})  # malformed: ignored
    assert sub.bars == [bar(T0, 10), bar(T0 + MIN, 12), bar(T0 + 2 * MIN, 13)]
    # The history came first; the waiting T0+MIN took its newest value in place.
    assert drain(sub) == [bar(T0, 10), bar(T0 + MIN, 12), bar(T0 + 2 * MIN, 13)]
    sub.update(wire(T0, 9.5))  # a provider's correction of an older bar
    assert drain(sub) == [bar(T0, 9.5)] and sub.bars[0] == bar(T0, 9.5)


def test_the_series_and_the_waiting_bars_are_bounded():
    sub = BarSubscription("AAPL", "1s", 3)
    assert sub.maxlen == 900  # at least the server's own bound for the interval
    sub.load([wire(T0 + i * 1000, i) for i in range(1000)], delayed=False)
    assert len(sub.bars) == 900 and sub.bars[0].t == T0 + 100_000 and sub.pending == 900
    sub.update(wire(T0, 1))  # older than a full series
    assert sub.bars[0].t == T0 + 100_000
    sub.update(wire(T0 + 1000 * 1000, 5))
    assert len(sub.bars) == 900 and sub.bars[-1] == bar(T0 + 1_000_000, 5) and sub.pending == 900
    assert drain(sub)[0].t == T0 + 101_000  # the oldest waiting one made room


def test_a_later_history_merges_and_hands_out_only_new_or_changed_bars():
    sub = BarSubscription("AAPL", "1m", 3)
    sub.load([wire(T0 + i * MIN, i) for i in range(4)], delayed=False)
    drain(sub)
    # After a reconnect: the newest 3 again, one of them corrected, and one that opened meanwhile.
    sub.load([wire(T0 + 2 * MIN, 2), wire(T0 + 3 * MIN, 3.5), wire(T0 + 4 * MIN, 4)], delayed=False)
    assert [b.t for b in sub.bars] == [T0 + i * MIN for i in range(5)]  # the older ones stayed
    assert drain(sub) == [bar(T0 + 3 * MIN, 3.5), bar(T0 + 4 * MIN, 4)]
    assert sub.loads == 2
    # Moved to the delayed tier: the newer bars go, even one still waiting for the loop.
    sub.update(wire(T0 + 5 * MIN, 5))
    sub.load([wire(T0 + 2 * MIN, 2), wire(T0 + 3 * MIN, 3.5)], delayed=True)
    assert sub.delayed and [b.t for b in sub.bars] == [T0 + i * MIN for i in range(4)]
    assert drain(sub) == []
    sub.load([], delayed=True)  # nothing has ended long enough ago
    assert sub.bars == [] and sub.pending == 0


async def test_the_iteration_waits_for_bars_and_ends_as_told():
    sub = BarSubscription("AAPL", "1m", 5)

    async def first() -> Bar:
        return await sub.__anext__()

    task = asyncio.create_task(first())
    await asyncio.sleep(0)
    assert not task.done()
    sub.update(wire(T0, 1))
    assert await asyncio.wait_for(task, 1) == bar(T0, 1)

    sub.update(wire(T0 + MIN, 2))
    err = ForbiddenSymbolError("gone", ["AAPL"])
    sub.end(err)  # the waiting bar comes first, then the error
    assert not sub.active and await sub.__anext__() == bar(T0 + MIN, 2)
    with pytest.raises(ForbiddenSymbolError):
        await sub.__anext__()
    sub.update(wire(T0 + 2 * MIN, 3))  # nothing after the end
    assert sub.pending == 0

    quiet = BarSubscription("AAPL", "1m", 5)
    quiet.update(wire(T0, 1))
    quiet.end(discard=True)
    assert [b async for b in quiet] == []


# -- the client over a fake link -------------------------------------------------------------------
Answer = Callable[[dict[str, Any]], list[dict[str, Any]]]


class FakeServer:
    """Stands in for the socket: answers each request with ``answer(request)``, then the pong."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.link: ServerLink | None = None
        self.sent: list[dict[str, Any]] = []

    async def send_str(self, data: str) -> None:
        msg = orjson.loads(data)
        self.sent.append(msg)
        replies = [{"type": "pong", "id": msg["id"]}] if msg["op"] == "ping" else self.answer(msg)
        for reply in replies:
            self.push(reply)

    def push(self, msg: dict[str, Any]) -> None:
        """A server message, delivered as the reader would (soon, in order)."""
        assert self.link is not None
        asyncio.get_running_loop().call_soon(self.link.handle, orjson.dumps(msg).decode())

    def ops(self) -> list[tuple[str, str, str]]:
        return [(m["op"], m.get("symbol", ""), m.get("interval", "")) for m in self.sent if m["op"] != "ping"]


def bar_server(history: list[dict[str, Any]], max_subs: int = 2) -> Answer:
    """Knows AAPL and MSFT (NVDA is forbidden), holds at most ``max_subs`` bar subscriptions."""
    held: set[tuple[str, str]] = set()

    def answer(msg: dict[str, Any]) -> list[dict[str, Any]]:
        key = (msg["symbol"], msg["interval"])
        if msg["op"] == "unsubscribe_bars":
            held.discard(key)
            return [{"type": "bars_unsubscribed", "s": key[0], "interval": key[1]}]
        if key not in held and len(held) >= max_subs:
            return [
                {
                    "type": "error",
                    "code": "too_many_bar_subscriptions",
                    "message": f"{len(held) + 1} bar subscriptions wanted; the limit is {max_subs} per connection",
                    "symbols": [key[0]],
                }
            ]
        if key[0] == "NVDA":
            return [{"type": "error", "code": "forbidden_symbol", "message": "no NVDA", "symbols": ["NVDA"]}]
        if key[0] not in ("AAPL", "MSFT"):
            return [
                {
                    "type": "error",
                    "code": "unknown_symbol",
                    "message": "No symbol APPL — did you mean AAPL (Apple Inc.)?",
                    "symbols": [key[0]],
                    "suggestions": {key[0]: ["AAPL"]},
                }
            ]
        held.add(key)
        data = history[-msg["history"] :] if msg["history"] else []
        return [{"type": "bars", "s": key[0], "interval": key[1], "delayed": False, "data": data}]

    return answer


class Wired:
    """A client whose writer serves requests over a fake link; :meth:`reconnect` starts a new one."""

    def __init__(self, answer: Answer) -> None:
        self.events: list[Event] = []
        self.client = TickerClient("ws://h/ws", on_event=self.events.append)
        self.server = FakeServer(answer)
        self.task: asyncio.Task[None] | None = None

    def connect(self, answer: Answer | None = None) -> FakeServer:
        if answer is not None:
            self.server = FakeServer(answer)
        c = self.client
        link = ServerLink(
            cast(aiohttp.ClientWebSocketResponse, self.server),
            c._subs,
            10,
            10,
            c._unsolicited,
            c._status_changed,
        )
        self.server.link = link
        resumed = self.task is not None
        self.task = asyncio.create_task(c._writer(link, resumed))
        return self.server

    async def reconnect(self, answer: Answer) -> FakeServer:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.client._subs.new_connection()
        return self.connect(answer)

    async def close(self) -> None:
        await self.client.close()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def take(sub: BarSubscription, n: int) -> list[Bar]:
    out: list[Bar] = []
    async with asyncio.timeout(timeout(2)):
        async for b in sub:
            out.append(b)
            if len(out) == n:
                break
    return out


HISTORY = [wire(T0 + i * MIN, 100 + i) for i in range(5)]


async def test_subscribe_bars_gives_the_history_then_live_bars():
    w = Wired(bar_server(HISTORY))
    server = w.connect()
    sub = await w.client.subscribe_bars("aapl", "1m", history=3)
    assert (sub.symbol, sub.interval, sub.history) == ("AAPL", "1m", 3)
    assert server.sent[0] == {"op": "subscribe_bars", "symbol": "AAPL", "interval": "1m", "history": 3}
    assert sub.bars == [bar(T0 + i * MIN, 100 + i) for i in range(2, 5)]  # in before the call returned
    assert w.client.bar_subscriptions == {("AAPL", "1m"): sub}
    assert await take(sub, 3) == sub.bars  # the history first
    server.push({"type": "bar", "s": "AAPL", "interval": "1m", "bar": wire(T0 + 4 * MIN, 200)})
    server.push({"type": "bar", "s": "MSFT", "interval": "1m", "bar": wire(T0 + 4 * MIN, 300)})  # not held
    server.push({"type": "bar", "s": "AAPL", "interval": "1m", "bar": wire(T0 + 5 * MIN, 201)})
    assert await take(sub, 2) == [bar(T0 + 4 * MIN, 200), bar(T0 + 5 * MIN, 201)]
    assert sub.bars[-2:] == [bar(T0 + 4 * MIN, 200), bar(T0 + 5 * MIN, 201)]
    assert await w.client.subscribe_bars("AAPL", "1m", history=3) is sub  # held: no second request
    assert len(server.ops()) == 1
    await w.close()
    assert not sub.active


async def test_unsubscribe_bars_ends_the_iteration_at_once():
    w = Wired(bar_server(HISTORY))
    server = w.connect()
    sub = await w.client.subscribe_bars("AAPL", "1m", history=5)
    assert sub.pending == 5
    await w.client.unsubscribe_bars("AAPL", "1m")
    assert server.ops()[-1] == ("unsubscribe_bars", "AAPL", "1m")
    assert not sub.active and sub.error is None and [b async for b in sub] == []  # waiting bars dropped
    assert w.client.bar_subscriptions == {}
    server.push({"type": "bar", "s": "AAPL", "interval": "1m", "bar": wire(T0 + 9 * MIN, 1)})  # on the wire
    await asyncio.sleep(0)
    assert sub.pending == 0 and not w.events
    await w.client.unsubscribe_bars("MSFT", "5m")  # not held: answered all the same
    await w.close()


async def test_refusals_raise_the_clients_errors_and_change_nothing():
    w = Wired(bar_server(HISTORY, max_subs=2))
    server = w.connect()
    with pytest.raises(UnknownSymbolError) as unknown:
        await w.client.subscribe_bars("APPL")
    assert unknown.value.symbols == ["APPL"] and unknown.value.suggestions == {"APPL": ["AAPL"]}
    with pytest.raises(ForbiddenSymbolError) as forbidden:
        await w.client.subscribe_bars("NVDA", "5m")
    assert forbidden.value.symbols == ["NVDA"]
    await w.client.subscribe_bars("AAPL", "1m")
    await w.client.subscribe_bars("AAPL", "5m")
    with pytest.raises(TooManyBarSubscriptionsError) as cap:
        await w.client.subscribe_bars("MSFT", "1m")
    assert cap.value.code == "too_many_bar_subscriptions" and "limit is 2" in cap.value.message
    assert cap.value.symbols == ["MSFT"]
    assert set(w.client.bar_subscriptions) == {("AAPL", "1m"), ("AAPL", "5m")}
    sent = len(server.sent)
    # Checked before anything is sent.
    with pytest.raises(InvalidSymbolError):
        await w.client.subscribe_bars("no good")
    with pytest.raises(BadRequestError) as interval:
        await w.client.subscribe_bars("AAPL", "1M")
    assert interval.value.code == "bad_request" and "1m" in interval.value.message
    for history in (-1, 5001, 2.5, True):
        with pytest.raises(BadRequestError):
            await w.client.subscribe_bars("AAPL", "1m", history=history)  # type: ignore[arg-type]
    with pytest.raises(BadRequestError):
        await w.client.unsubscribe_bars("AAPL", "2m")
    assert len(server.sent) == sent and not w.events
    await w.close()


async def test_after_a_reconnect_bars_are_subscribed_again_and_the_missed_ones_come():
    w = Wired(bar_server(HISTORY))
    w.connect()
    sub = await w.client.subscribe_bars("AAPL", "1m", history=3)
    assert len(await take(sub, 3)) == 3
    # The new server's history: a bar corrected and two that opened while the connection was down.
    newer = [*HISTORY[:3], wire(T0 + 3 * MIN, 103.5), wire(T0 + 4 * MIN, 104), wire(T0 + 5 * MIN, 105)]
    server = await w.reconnect(bar_server(newer))
    await eventually(lambda: sub.loads >= 2, 2, "the history of the new connection")
    assert server.ops() == [("subscribe_bars", "AAPL", "1m")] and server.sent[0]["history"] == 3
    assert await take(sub, 2) == [bar(T0 + 3 * MIN, 103.5), bar(T0 + 5 * MIN, 105)]
    assert [b.t for b in sub.bars] == [T0 + i * MIN for i in range(2, 6)]  # the older one stayed
    assert [e.kind for e in w.events] == [EventKind.RESUMED]
    await w.close()


async def test_a_subscription_the_new_server_refuses_ends_with_its_error_and_an_event():
    w = Wired(bar_server(HISTORY))
    w.connect()
    sub = await w.client.subscribe_bars("MSFT", "1m", history=1)
    kept = await w.client.subscribe_bars("AAPL", "1m", history=1)

    def no_msft(msg: dict[str, Any]) -> list[dict[str, Any]]:
        if msg["symbol"] == "MSFT":
            return [{"type": "error", "code": "forbidden_symbol", "message": "no MSFT", "symbols": ["MSFT"]}]
        return bar_server(HISTORY)(msg)

    await w.reconnect(no_msft)
    await eventually(lambda: EventKind.RESUMED in [e.kind for e in w.events], 2, "the resumed event")
    errors = [e.error for e in w.events if e.kind is EventKind.ERROR]
    assert len(errors) == 1 and isinstance(errors[0], ForbiddenSymbolError)
    assert not sub.active and sub.error is errors[0] and kept.active and kept.loads == 2
    assert len(await take(sub, 1)) == 1  # its waiting bar, then the error
    with pytest.raises(ForbiddenSymbolError):
        await sub.__anext__()
    assert set(w.client.bar_subscriptions) == {("AAPL", "1m")}
    await w.close()


async def test_the_server_ending_a_subscription_after_a_refresh_ends_it_with_forbidden_symbol():
    w = Wired(bar_server(HISTORY))
    server = w.connect()
    sub = await w.client.subscribe_bars("AAPL", "5m", history=0)
    assert sub.bars == [] and sub.loads == 1
    server.push({"type": "bars_unsubscribed", "s": "AAPL", "interval": "5m"})
    text = "the refreshed token does not cover AAPL"
    server.push({"type": "error", "code": "forbidden_symbol", "message": text, "symbols": ["AAPL"]})
    await eventually(lambda: not sub.active, 2, "the subscription's end")
    assert isinstance(sub.error, ForbiddenSymbolError) and sub.error.symbols == ["AAPL"]
    assert text in str(sub.error)
    with pytest.raises(ForbiddenSymbolError):
        await sub.__anext__()
    await w.close()


async def test_a_subscription_ended_by_the_server_takes_the_reason_that_follows_or_a_plain_end():
    w = Wired(bar_server(HISTORY))
    server = w.connect()
    nope = await w.client.subscribe_bars("MSFT", "1m", history=0)
    other = await w.client.subscribe_bars("AAPL", "1m", history=0)
    server.push(
        {"type": "bars_unsubscribed", "s": "MSFT", "interval": "1m"}
    )  # a pending symbol found unknown
    server.push(
        {"type": "error", "code": "unknown_symbol", "message": "unknown symbol: MSFT", "symbols": ["MSFT"]}
    )
    await eventually(lambda: not nope.active, 2, "the subscription's end")
    assert isinstance(nope.error, UnknownSymbolError) and nope.error.symbols == ["MSFT"]
    server.push({"type": "bars_unsubscribed", "s": "AAPL", "interval": "1m"})  # no reason follows
    server.push({"type": "pong", "id": None})
    await eventually(lambda: not other.active, 2, "the subscription's end")
    assert isinstance(other.error, ServerError) and "1m bars of AAPL" in str(other.error)
    await w.close()


async def test_a_queued_subscribe_then_unsubscribe_leaves_nothing_held():
    w = Wired(bar_server(HISTORY))
    # Both calls are made while disconnected; they run in order once connected.
    sub_task = asyncio.create_task(w.client.subscribe_bars("AAPL", "1m", history=2))
    unsub_task = asyncio.create_task(w.client.unsubscribe_bars("AAPL", "1m"))
    await asyncio.sleep(0)
    server = w.connect()
    sub = await asyncio.wait_for(sub_task, 2)
    await asyncio.wait_for(unsub_task, 2)
    assert server.ops() == [("subscribe_bars", "AAPL", "1m"), ("unsubscribe_bars", "AAPL", "1m")]
    assert not sub.active and w.client.bar_subscriptions == {}
    await w.close()
