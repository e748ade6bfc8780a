"""The client's per-symbol states and unknown symbols, without a socket: the bookkeeping, what the link makes
of ``status`` and ``unknown_symbol`` messages, the events, and how ``ticker watch`` shows them."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable
from typing import Any, cast

import aiohttp
import orjson
import pytest
from rich.console import Console

from ticker.cli.watch_view import JsonLines, TableView, status_line
from ticker.client import (
    Event,
    EventKind,
    ForbiddenSymbolError,
    ServerError,
    State,
    SymbolStatus,
    TickerClient,
    UnknownSymbolError,
)
from ticker.client.link import ServerLink, Subscriptions
from ticker.client.models import server_error

DOWN = SymbolStatus("down", "feed replay is down: the recording ended")
PENDING = SymbolStatus("pending", "not confirmed yet")
LIVE = SymbolStatus("live")
UNKNOWN_APPL = {
    "type": "error",
    "code": "unknown_symbol",
    "message": "No symbol APPL — did you mean AAPL (Apple Inc.)?",
    "symbols": ["APPL"],
    "suggestions": {"APPL": ["AAPL"]},
}


def entry(symbol: str, st: SymbolStatus) -> dict[str, str]:
    return {"s": symbol, "state": st.state, "reason": st.reason}


# -- the bookkeeping -----------------------------------------------------------------------------
def test_states_are_live_by_default_and_change_with_status_entries():
    subs = Subscriptions(["AAPL", "MSFT"], buffer_limit=10)
    assert subs.states() == {"AAPL": LIVE, "MSFT": LIVE}
    assert subs.set_status([entry("AAPL", DOWN), entry("NVDA", DOWN)]) == [
        ("AAPL", DOWN)
    ]  # NVDA: not followed
    assert subs.states() == {"AAPL": DOWN, "MSFT": LIVE}
    assert subs.set_status([entry("AAPL", DOWN)]) == []  # the same state again is no change
    assert subs.set_status([entry("AAPL", PENDING)]) == [("AAPL", PENDING)]
    assert subs.set_status([{"s": "AAPL", "state": "live", "reason": ""}]) == [("AAPL", LIVE)]
    assert subs.status == {} and subs.states()["AAPL"] == LIVE
    # A malformed entry is skipped, the rest applied; a missing reason reads as "".
    bad: list[Any] = ["AAPL", {"s": "AAPL"}, {"s": 1, "state": "down"}, {"s": "MSFT", "state": "closed"}]
    assert subs.set_status(bad) == [("MSFT", SymbolStatus("closed", ""))]


def test_an_unsubscribed_symbol_forgets_its_state():
    subs = Subscriptions(["AAPL", "MSFT"], buffer_limit=10)
    subs.set_status([entry("AAPL", DOWN), entry("MSFT", DOWN)])
    subs.forget(["AAPL"])
    assert subs.states() == {"MSFT": DOWN} and "AAPL" not in subs.status
    subs.symbols["AAPL"] = None  # followed again: live until the server says otherwise
    assert subs.states()["AAPL"] == LIVE


def test_after_a_reconnect_states_the_new_server_does_not_repeat_turn_live():
    subs = Subscriptions(["AAPL", "MSFT", "NVDA"], buffer_limit=10)
    subs.set_status([entry("AAPL", DOWN), entry("MSFT", DOWN)])
    subs.new_connection()
    assert subs.states()["AAPL"] == DOWN  # until the resubscription is answered
    assert subs.set_status([entry("MSFT", DOWN)]) == []  # still down: no change
    assert subs.settle() == [("AAPL", LIVE)]
    assert subs.states() == {"AAPL": LIVE, "MSFT": DOWN, "NVDA": LIVE}
    assert subs.settle() == []


# -- errors ---------------------------------------------------------------------------------------
def test_unknown_symbol_maps_to_its_own_error_with_symbols_and_suggestions():
    err = server_error("unknown_symbol", "No symbol APPL — did you mean AAPL?", ["APPL"], {"APPL": ["AAPL"]})
    assert (
        isinstance(err, UnknownSymbolError) and isinstance(err, ServerError) and isinstance(err, LookupError)
    )
    assert err.code == "unknown_symbol" and err.symbols == ["APPL"] and err.suggestions == {"APPL": ["AAPL"]}
    assert str(err) == "unknown_symbol: No symbol APPL — did you mean AAPL?"
    assert UnknownSymbolError("No symbol X.").suggestions == {}


def test_status_events_read_well():
    ev = Event(EventKind.STATUS, State.CONNECTED, symbol="AAPL", status=DOWN)
    assert str(ev) == "status AAPL down: feed replay is down: the recording ended"
    assert str(Event(EventKind.STATUS, State.CONNECTED, symbol="AAPL", status=LIVE)) == "status AAPL live"


# -- the link and the client's events -------------------------------------------------------------
class FakeServer:
    """Stands in for the socket: answers each request with ``answers`` (a function of the request), then the pong."""

    def __init__(self, answer: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> None:
        self.answer = answer
        self.link: ServerLink | None = None
        self.sent: list[dict[str, Any]] = []

    async def send_str(self, data: str) -> None:
        msg = orjson.loads(data)
        self.sent.append(msg)
        assert self.link is not None
        replies = [{"type": "pong", "id": msg["id"]}] if msg["op"] == "ping" else self.answer(msg)
        for reply in replies:
            asyncio.get_running_loop().call_soon(self.link.handle, orjson.dumps(reply).decode())


def wired(client: TickerClient, answer: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> ServerLink:
    """A link of ``client`` (its subscriptions, error and status handlers) to a fake server."""
    server = FakeServer(answer)
    link = ServerLink(
        cast(aiohttp.ClientWebSocketResponse, server),
        client._subs,
        10,
        10,
        client._unsolicited,
        client._status_changed,
    )
    server.link = link
    return link


def replay_server(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """Knows AAPL and MSFT; MSFT is down; refuses everything else as unknown."""
    known = [s for s in msg["symbols"] if s in ("AAPL", "MSFT")]
    unknown = [s for s in msg["symbols"] if s not in known]
    out: list[dict[str, Any]] = []
    if unknown:
        out.append({**UNKNOWN_APPL, "symbols": unknown, "suggestions": {"APPL": ["AAPL"]}})
    out.append({"type": "subscribed", "symbols": known, "delayed": []})
    if "MSFT" in known:
        out.append({"type": "status", "data": [entry("MSFT", DOWN)]})
    return out


async def test_subscribe_raises_for_unknown_symbols_and_keeps_the_known_ones():
    events: list[Event] = []
    client = TickerClient("ws://h/ws", on_event=events.append)
    link = wired(client, replay_server)
    with pytest.raises(UnknownSymbolError) as info:
        await link.exchange("subscribe", ["AAPL", "APPL", "MSFT"])
    assert info.value.symbols == ["APPL"] and info.value.suggestions == {"APPL": ["AAPL"]}
    assert "did you mean AAPL (Apple Inc.)" in str(info.value)
    assert client.symbols == {"AAPL", "MSFT"}
    assert client.states == {"AAPL": LIVE, "MSFT": DOWN}
    assert [(e.kind, e.symbol, e.status) for e in events] == [(EventKind.STATUS, "MSFT", DOWN)]


async def test_a_second_refusal_of_one_request_comes_as_an_error_event():
    def both(msg: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            UNKNOWN_APPL,
            {
                "type": "error",
                "code": "forbidden_symbol",
                "message": "not entitled to BTC",
                "symbols": ["BTC"],
            },
            {"type": "subscribed", "symbols": ["AAPL"], "delayed": []},
        ]

    events: list[Event] = []
    client = TickerClient("ws://h/ws", on_event=events.append)
    with pytest.raises(UnknownSymbolError):
        await wired(client, both).exchange("subscribe", ["AAPL", "APPL", "BTC"])
    assert [e.kind for e in events] == [EventKind.ERROR]
    assert isinstance(events[0].error, ForbiddenSymbolError) and events[0].error.symbols == ["BTC"]
    assert client.symbols == {"AAPL"}


async def test_a_pending_symbol_dropped_later_leaves_the_set_with_an_error_event():
    events: list[Event] = []
    client = TickerClient("ws://h/ws", on_event=events.append)

    def pending_then_dropped(msg: dict[str, Any]) -> list[dict[str, Any]]:
        if msg["op"] == "subscribe" and "APPL" in msg["symbols"]:
            return [
                {"type": "subscribed", "symbols": ["AAPL", "APPL"], "delayed": []},
                {"type": "status", "data": [entry("APPL", PENDING)]},
            ]
        # The next request's answer crosses the drop: its subscribed set lacks APPL, then the refusal.
        return [
            {"type": "subscribed", "symbols": ["AAPL", "MSFT"], "delayed": []},
            UNKNOWN_APPL,
        ]

    link = wired(client, pending_then_dropped)
    assert await link.exchange("subscribe", ["AAPL", "APPL"]) == {"AAPL", "APPL"}
    assert client.states["APPL"] == PENDING
    # The refusal names none of the request's symbols: the request succeeds, the drop is an event.
    assert await link.exchange("subscribe", ["MSFT"]) == {"AAPL", "MSFT"}
    assert "APPL" not in client.states and client.symbols == {"AAPL", "MSFT"}
    assert [e.kind for e in events] == [EventKind.STATUS, EventKind.ERROR]
    assert isinstance(events[1].error, UnknownSymbolError) and events[1].error.symbols == ["APPL"]
    # Outside any request (the server's own tick), the same drop is an event too.
    link.handle(orjson.dumps({"type": "subscribed", "symbols": ["AAPL"], "delayed": []}).decode())
    link.handle(orjson.dumps({**UNKNOWN_APPL, "symbols": ["MSFT"], "suggestions": {}}).decode())
    assert client.symbols == {"AAPL"} and isinstance(events[-1].error, UnknownSymbolError)


# -- ticker watch ---------------------------------------------------------------------------------
def test_json_lines_print_state_changes_and_stop_when_refusals_leave_nothing(
    capsys: pytest.CaptureFixture[str],
):
    view = JsonLines(count=0)
    client = TickerClient("ws://h/ws", ["AAPL"])
    view.client = client
    view.event(Event(EventKind.STATUS, State.CONNECTED, symbol="AAPL", status=DOWN))
    out = capsys.readouterr().out.splitlines()
    assert [orjson.loads(line) for line in out] == [
        {"type": "status", "s": "AAPL", "state": "down", "reason": DOWN.reason}
    ]
    assert status_line("AAPL", LIVE) == {"type": "status", "s": "AAPL", "state": "live", "reason": ""}
    refusal = UnknownSymbolError("No symbol MSFT.", ["MSFT"])
    view.event(Event(EventKind.ERROR, State.CONNECTED, error=refusal))  # AAPL is left: go on, say so
    assert not view.done.is_set() and "No symbol MSFT." in capsys.readouterr().err
    client._subs.forget(["AAPL"])
    view.event(Event(EventKind.ERROR, State.CONNECTED, error=UnknownSymbolError("No symbol AAPL.", ["AAPL"])))
    assert view.done.is_set() and view.exit_status == 2 and view.exit_message == "No symbol AAPL."


def test_the_table_shows_each_symbols_state_and_the_refused_ones():
    view = TableView(["AAPL", "MSFT", "NVDA", "APPL"], "ws://h/ws", 0)
    client = TickerClient("ws://h/ws", ["AAPL", "MSFT", "NVDA"])
    view.client = client
    client._subs.apply([{"s": "AAPL", "p": 228.5, "t": 1, "q": 1}, {"s": "MSFT", "p": 415.0, "t": 1, "q": 1}])
    client._subs.set_status([entry("MSFT", DOWN), entry("NVDA", PENDING)])
    view.refuse(UnknownSymbolError("No symbol APPL — did you mean AAPL?", ["APPL"]))
    console = Console(width=200, record=True, color_system="truecolor", file=io.StringIO())
    console.print(view.render())
    rows = {
        line.split("│")[1].strip(): line
        for line in console.export_text(clear=False).splitlines()
        if line.count("│") > 2
    }
    assert "228.50" in rows["AAPL"] and rows["AAPL"].rstrip(" │").endswith("live")
    assert "415.00" in rows["MSFT"] and "down feed replay is down: the recording ended" in rows["MSFT"]
    assert "pending not confirmed yet" in rows["NVDA"]
    assert "unknown No symbol APPL — did you mean AAPL?" in rows["APPL"]
    ansi = console.export_text(styles=True)  # a symbol that is not live has its values dimmed
    assert re.search(r"\x1b\[2m *415\.00", ansi) and not re.search(r"\x1b\[2m *228\.50", ansi)
