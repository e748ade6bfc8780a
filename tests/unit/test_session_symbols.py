"""The session and the directory: unknown symbols refused in the documented order, states after subscribe."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from ticker.entitlements import Entitlements, Identity
from ticker.errors import UnknownSymbols
from ticker.hub import Hub
from ticker.session import Access, Session


class Book:
    """Knows ``known``; ``APPL`` is suggested ``AAPL``; ``CLOSEDCO`` is closed."""

    def __init__(self, known: set[str]) -> None:
        self.known = known

    def unknown(
        self, symbols: Sequence[str], allow: Callable[[str], bool] | None = None
    ) -> UnknownSymbols | None:
        bad = [s for s in symbols if s not in self.known]
        return UnknownSymbols(bad, {"APPL": [("AAPL", "Apple Inc.")]}) if bad else None

    def statuses(self, symbols: Iterable[str], remember: bool = True) -> list[dict[str, str]]:
        return [{"s": s, "state": "closed", "reason": "market closed"} for s in symbols if s == "CLOSEDCO"]


def make(identity: Identity | None = None, max_symbols: int = 500) -> tuple[Hub[str], Session[str]]:
    hub: Hub[str] = Hub(max_symbols=max_symbols)
    hub.add("c")
    access = Access(required=identity is not None)
    s = Session(hub, "c", 1000.0, 1000, 0.0, access, identity, Book({"AAPL", "MSFT", "CLOSEDCO"}))
    return hub, s


def msgs(raw: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(r) for r in raw]


def test_unknown_symbols_are_refused_with_suggestions_and_the_known_ones_applied():
    hub, s = make()
    replies = msgs(s.receive('{"op":"subscribe","symbols":["AAPL","APPL","ZZZZ"]}', 0.0).replies)
    err, sub, told = replies
    assert told == {"type": "snapshot", "e": hub.epoch, "data": []}
    assert err["code"] == "unknown_symbol" and err["symbols"] == ["APPL", "ZZZZ"]
    assert err["message"] == "No symbol APPL — did you mean AAPL (Apple Inc.)? No symbol ZZZZ."
    assert err["suggestions"] == {"APPL": ["AAPL"]}
    assert sub == {"type": "subscribed", "symbols": ["AAPL"], "delayed": [], "rates": {}}
    assert hub.demand() == {"AAPL"}  # never in the hub, the demand or anyone's suggestions


def test_the_checks_run_in_order_syntax_cap_directory_entitlements():
    _hub, s = make(max_symbols=2)
    replies = msgs(s.receive('{"op":"subscribe","symbols":["bad$","AAPL","APPL","NOPE"]}', 0.0).replies)
    # the cap counts every well-formed symbol of the request, unknown ones included: the whole request goes
    assert [m.get("code") for m in replies] == ["invalid_symbol", "too_many_symbols"]
    hub, s = make(Identity("ann", 9e9, Entitlements(realtime=("AAPL",))))
    s.open("")
    replies = msgs(s.receive('{"op":"subscribe","symbols":["AAPL","MSFT","NOPE"]}', 0.0).replies)
    assert [(m["type"], m.get("code")) for m in replies] == [
        ("error", "unknown_symbol"),
        ("error", "forbidden_symbol"),
        ("subscribed", None),
        ("snapshot", None),
    ]
    assert hub.symbols_of("c") == {"AAPL"}


def test_new_symbols_that_are_not_live_get_a_status_after_subscribed():
    _hub, s = make()
    replies = msgs(s.receive('{"op":"subscribe","symbols":["CLOSEDCO","AAPL"]}', 0.0).replies)
    assert [m["type"] for m in replies] == ["subscribed", "snapshot", "status"]  # the snapshot: the epoch
    assert replies[2]["data"] == [{"s": "CLOSEDCO", "state": "closed", "reason": "market closed"}]
    again = msgs(s.receive('{"op":"subscribe","symbols":["CLOSEDCO"]}', 0.0).replies)
    assert [m["type"] for m in again] == ["subscribed"]  # not new: no status again


def test_drop_unsubscribes_a_symbol_refused_after_the_fact():
    hub, s = make()
    s.receive('{"op":"subscribe","symbols":["AAPL","MSFT"]}', 0.0)
    out = s.drop(["MSFT"], UnknownSymbols(["MSFT"]))
    sub, err = msgs(out.replies)
    assert sub["symbols"] == ["AAPL"] and err["code"] == "unknown_symbol" and err["symbols"] == ["MSFT"]
    assert hub.symbols_of("c") == {"AAPL"} and "MSFT" in out.unsubscribed
