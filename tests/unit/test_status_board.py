"""The node's status board with a fake node: states worked out in order, pushes only on change and to every
holder, REST reads that push nothing, unknown symbols refused with suggestions, and the later drop."""

from __future__ import annotations

import time
from typing import Any

import orjson

from tests.support.fakes.board import BoardNode
from tests.support.fakes.feed import StubFeed
from ticker.directory import SymbolInfo
from ticker.errors import ProtocolError
from ticker.quote import Quote
from ticker.server.status_board import STEP, StatusBoard
from ticker.status import SymbolStatus


def fake_feed(name: str, steady: bool = False) -> StubFeed:
    return StubFeed(name, steady=steady, data_at=time.monotonic())


class Conn:
    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[dict[str, Any]] = []
        self.dropped: list[tuple[list[str], str]] = []

    def send_message(self, kind: str, payload: bytes) -> None:
        self.sent.append(orjson.loads(payload))

    def drop_symbols(self, symbols: list[str], refusal: ProtocolError) -> None:
        self.dropped.append((symbols, refusal.code))


def rig(*feeds: StubFeed) -> tuple[BoardNode, StatusBoard, Conn, Conn]:
    node = BoardNode(list(feeds) or [fake_feed("sim")])
    board = StatusBoard(node, stale_after=15.0)  # type: ignore[arg-type]
    a, b = Conn("a"), Conn("b")
    for c in (a, b):
        node.hub.add(c)
    return node, board, a, b


def entries(conn: Conn) -> list[tuple[str, str]]:
    return [(e["s"], e["state"]) for m in conn.sent for e in m["data"]]


def test_a_change_reaches_every_holder_even_after_a_new_subscriber_or_a_rest_read_looked():
    node, board, a, b = rig()
    feed = node.feeds[0]
    node.directory.replace("sim", [SymbolInfo("AAPL", "Apple Inc.")])
    node.hub.subscribe(a, ["AAPL"])
    assert board.statuses(["AAPL"]) == []  # a was told: live
    board.tick()
    assert a.sent == []
    feed._mark_down("cannot reach the upstream: DNS lookup failed")
    node.hub.subscribe(b, ["AAPL"])
    assert [e["state"] for e in board.statuses(["AAPL"])] == ["down"]  # b is told at once
    assert [e["state"] for e in board.statuses(["AAPL"], remember=False)] == ["down"]  # a REST read
    board.tick()
    assert entries(a) == [("AAPL", "down")] and entries(b) == [("AAPL", "down")]
    assert "DNS lookup failed" in a.sent[0]["data"][0]["reason"]
    board.tick()
    assert len(a.sent) == 1  # no change, no push
    feed._mark_up()
    board.tick()
    assert entries(a) == [("AAPL", "down"), ("AAPL", "live")]


def test_down_wins_over_pending_and_pending_names_the_feed():
    node, board, _a, _b = rig()
    feed = node.feeds[0]
    assert board.status("AAPL").state == "pending" and "sim" in board.status("AAPL").reason
    feed._mark_down("cannot reach stream.example: DNS lookup failed")
    assert board.status("AAPL").state == "down"


def test_the_feed_whose_directory_lists_a_symbol_speaks_for_it():
    sim, crypto = fake_feed("simulated"), fake_feed("binance")
    node, board, _a, _b = rig(sim, crypto)
    node.directory.replace("simulated", [SymbolInfo("AAPL", "Apple Inc.")])
    node.directory.replace("binance", [SymbolInfo("BTCUSDT", "BTC/USDT", "Binance", "crypto", "USDT")])
    sim.said["AAPL"] = sim.said["BTCUSDT"] = SymbolStatus("closed", "US market closed")
    assert board.status("AAPL").state == "closed"
    assert board.status("BTCUSDT").state == "live"  # not the simulated market's night


def test_unknown_symbols_get_suggestions_within_what_the_caller_may_see():
    node, board, _a, _b = rig()
    node.directory.replace("sim", [SymbolInfo("AAPL", "Apple Inc."), SymbolInfo("AAP", "Advance Auto Parts")])
    refused = board.unknown(["APPL", "AAPL"])
    assert refused is not None and refused.symbols == ["APPL"]
    assert "AAPL" in [s for s, _n in refused.suggestions["APPL"]]
    hidden = board.unknown(["APPL"], allow=lambda s: s != "AAPL")
    assert hidden is not None and "AAPL" not in [s for s, _n in hidden.suggestions.get("APPL", [])]
    node.hub.publish(Quote("ZZZ", 1.0, 1), 0.0)
    assert board.unknown(["ZZZ"]) is None  # it has quotes: it exists, whatever the list says


def test_a_pending_symbol_that_turns_out_unknown_is_dropped_from_every_holder():
    node, board, a, b = rig()
    node.hub.subscribe(a, ["AAPL", "NOPE"])
    node.hub.subscribe(b, ["~NOPE"])
    bars_only = Conn("c")  # holds the symbol by a bar subscription alone
    node.bar_hub.hold(bars_only, "NOPE", "1m", "NOPE", 10)
    assert board.status("NOPE").state == "pending"
    node.directory.replace("sim", [SymbolInfo("AAPL", "Apple Inc.")])
    board.tick()
    assert a.dropped == [(["NOPE"], "unknown_symbol")] and b.dropped == [(["NOPE"], "unknown_symbol")]
    assert bars_only.dropped == [(["NOPE"], "unknown_symbol")]


def test_a_tick_over_a_large_demand_comes_in_steps_and_pushes_what_one_tick_would():
    node, board, a, b = rig()
    feed = node.feeds[0]
    many = [f"S{i:05d}" for i in range(2 * STEP + 10)]
    node.directory.replace("sim", [SymbolInfo(s, s) for s in many])
    holders = [Conn(f"c{i}") for i in range(len(many) // 400 + 1)]  # 400 symbols each (a hub's limit: 500)
    for i, c in enumerate(holders):
        node.hub.add(c)
        node.hub.subscribe(c, many[i * 400 : (i + 1) * 400])
    node.hub.subscribe(b, many[:3])
    board.tick()
    feed._mark_down("cannot reach the upstream")
    steps = board.ticking()
    assert next(steps) is None and next(steps) is None  # a step per STEP symbols ...
    assert all(c.sent == [] for c in holders) and b.sent == []  # ... and the pushes at the end
    assert list(steps) == []
    told = [e for c in holders for e in entries(c)]
    assert sorted(told) == [(s, "down") for s in many] and a.sent == []
    assert entries(b) == [(s, "down") for s in many[:3]]


def test_what_changed_between_the_steps_of_a_tick_is_respected():
    node, board, a, _b = rig()
    feed = node.feeds[0]
    many = [f"S{i:05d}" for i in range(STEP + 10)]
    node.directory.replace("sim", [SymbolInfo(s, s) for s in many])
    holders = [Conn(f"c{i}") for i in range(len(many) // 400 + 1)]
    for i, c in enumerate(holders):
        node.hub.add(c)
        node.hub.subscribe(c, many[i * 400 : (i + 1) * 400])
    node.hub.subscribe(a, ["AAAA", many[-1]])  # AAAA: no feed knows it (yet); many[-1]: worked out last
    board.tick()
    assert a.dropped == [(["AAAA"], "unknown_symbol")]
    node.hub.unsubscribe(a, ["AAAA"])  # as a connection does when told
    node.hub.subscribe(a, ["AAAB"])
    feed._mark_down("cannot reach the upstream")
    steps = board.ticking()
    next(steps)  # AAAB was found unknown; then, while the loop ran, ...
    node.hub.publish(Quote("AAAB", 1.0, 1), 0.0)  # ... a first quote came: it exists after all
    node.hub.unsubscribe(a, [many[-1]])  # ... and a left the symbol it had to be told about
    assert list(steps) == []
    assert a.dropped == [(["AAAA"], "unknown_symbol")] and a.sent == []
    assert [e for c in holders for e in entries(c)][-1] == (many[-1], "down")
