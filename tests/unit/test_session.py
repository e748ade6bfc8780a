"""The per-connection session (Sans-I/O): client messages and a clock in, replies and a close decision out."""

from __future__ import annotations

import dataclasses
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from ticker import errors
from ticker.errors import (
    FLOOD,
    CoreError,
    InvalidSymbol,
    MalformedQuote,
    OptionError,
    ProtocolError,
    TooManySymbols,
)
from ticker.hub import Hub
from ticker.quote import Quote
from ticker.session import Outcome, Session, open_stream, query_symbols

RULE = "expected 1-32 characters of A-Z 0-9 . - : / _"


def make(
    max_symbols: int = 500, rate: float = 1000.0, burst: int = 1000, now: float = 0.0
) -> tuple[Hub[str], Session[str]]:
    hub: Hub[str] = Hub(max_symbols=max_symbols)
    hub.epoch = EPOCH
    hub.add("c")
    return hub, Session(hub, "c", rate, burst, now)


EPOCH = "5f2c9a1b77d0#3"
#: A connection's first subscribe is answered with a snapshot even when no symbol has a value: it says the epoch.
TOLD = b'{"type":"snapshot","e":"5f2c9a1b77d0#3","data":[]}'


def msgs(out: Outcome) -> list[dict[str, Any]]:
    return [orjson.loads(r) for r in out.replies]


def error(code: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "code": code, "message": message})


# -- dispatch ------------------------------------------------------------------------------------
def test_ping_is_answered_with_its_id_or_null():
    _hub, s = make()
    assert s.receive('{"op":"ping","id":{"n":[1,"x"]}}', 0.0).replies == [
        b'{"type":"pong","id":{"n":[1,"x"]}}'
    ]
    out = s.receive('{"op":"ping"}', 0.0)
    assert out.replies == [b'{"type":"pong","id":null}'] and out.errors == [] and out.close is None


def test_subscribe_answers_the_full_set_then_a_snapshot_of_symbols_with_a_value():
    hub, s = make()
    hub.publish(Quote("AAPL", 1.0, 1), 0.0)
    out = s.receive('{"op":"subscribe","symbols":["aapl","MSFT","aapl"]}', 0.0)
    first, snap = msgs(out)
    assert first == {"type": "subscribed", "symbols": ["AAPL", "MSFT"], "delayed": [], "rates": {}}
    assert snap["type"] == "snapshot" and [(e["s"], e["q"]) for e in snap["data"]] == [("AAPL", 1)]
    assert snap["e"] == EPOCH  # the epoch of the source that numbered q
    assert s.symbols == {"AAPL", "MSFT"} == hub.symbols_of("c")
    # a symbol without a value yet gets no snapshot; the reply still holds the whole set, sorted
    assert msgs(s.receive('{"op":"subscribe","symbols":["KO"]}', 0.0)) == [
        {"type": "subscribed", "symbols": ["AAPL", "KO", "MSFT"], "delayed": [], "rates": {}}
    ]


def test_the_first_subscribe_that_adds_symbols_says_the_epoch_even_without_values():
    hub, s = make()
    assert s.receive('{"op":"subscribe","symbols":[]}', 0.0).replies == [
        b'{"type":"subscribed","symbols":[],"delayed":[],"rates":{}}'
    ]  # nothing added: nothing to number yet
    assert s.receive('{"op":"subscribe","symbols":["KO"]}', 0.0).replies == [
        b'{"type":"subscribed","symbols":["KO"],"delayed":[],"rates":{}}',
        TOLD,
    ]
    hub.epoch = "other"
    assert s.receive('{"op":"subscribe","symbols":["PEP"]}', 0.0).replies == [
        b'{"type":"subscribed","symbols":["KO","PEP"],"delayed":[],"rates":{}}'
    ]  # told once; a new epoch reaches the connection by the node's resync


def test_unsubscribe_answers_the_remaining_set_and_names_what_was_asked_for():
    _hub, s = make()
    s.receive('{"op":"subscribe","symbols":["AAPL","MSFT"]}', 0.0)
    out = s.receive('{"op":"unsubscribe","symbols":["aapl","NOPE"]}', 0.0)
    assert out.replies == [b'{"type":"subscribed","symbols":["MSFT"],"delayed":[],"rates":{}}']
    assert out.unsubscribed == ["AAPL"] and s.symbols == {"MSFT"}
    assert s.receive('{"op":"subscribe","symbols":["KO"]}', 0.0).unsubscribed == []


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        (
            "not json",
            "bad_json",
            "frame is not valid JSON: invalid literal, expected 'null': line 1 column 1 (char 0)",
        ),
        ("{", "bad_json", "frame is not valid JSON: unexpected end of data: line 1 column 2 (char 1)"),
        ("[1,2]", "bad_request", 'a message must be a JSON object with an "op" field'),
        ('{"symbols":["A"]}', "bad_request", 'missing or non-string "op" field'),
        ('{"op":5}', "bad_request", 'missing or non-string "op" field'),
        ('{"op":"subscribe"}', "bad_request", '"subscribe" needs "symbols": a list of symbol strings'),
        (
            '{"op":"unsubscribe","symbols":"A"}',
            "bad_request",
            '"unsubscribe" needs "symbols": a list of symbol strings',
        ),
        (
            '{"op":"dance"}',
            "unknown_op",
            "unknown op 'dance' (known: subscribe, unsubscribe, subscribe_bars, unsubscribe_bars, options, ping, auth, refresh)",
        ),
    ],
)
def test_malformed_messages_get_one_error_and_change_nothing(frame: str, code: str, message: str):
    _hub, s = make()
    out = s.receive(frame, 0.0)
    assert out.replies == [error(code, message)]
    assert out.errors == [code] and out.close is None and s.symbols == frozenset()
    assert s.receive('{"op":"ping","id":1}', 0.0).replies == [b'{"type":"pong","id":1}']  # still open


def test_an_unknown_op_is_cut_to_64_characters():
    _hub, s = make()
    (msg,) = msgs(s.receive('{"op":"' + "x" * 100 + '"}', 0.0))
    assert (
        msg["message"]
        == f"unknown op {'x' * 64!r} (known: subscribe, unsubscribe, subscribe_bars, unsubscribe_bars, options, ping, auth, refresh)"
    )


def test_binary_frames_are_refused_even_when_they_hold_json():
    _hub, s = make()
    out = s.receive(b'{"op":"ping"}', 0.0)
    assert out.replies == [error("bad_request", "binary frames are not supported; send JSON text frames")]
    assert out.errors == ["bad_request"]


def test_invalid_symbols_are_named_and_the_valid_ones_still_apply():
    _hub, s = make()
    out = s.receive('{"op":"subscribe","symbols":["AAPL","no good",7,null,"MSFT"]}', 0.0)
    assert out.replies == [
        error("invalid_symbol", f"invalid symbol 'no good', '7', 'null': {RULE}"),
        b'{"type":"subscribed","symbols":["AAPL","MSFT"],"delayed":[],"rates":{}}',
        TOLD,
    ]
    assert out.errors == ["invalid_symbol"]
    out = s.receive('{"op":"unsubscribe","symbols":["AAPL","$"]}', 0.0)
    assert out.replies == [
        error("invalid_symbol", f"invalid symbol '$': {RULE}"),
        b'{"type":"subscribed","symbols":["MSFT"],"delayed":[],"rates":{}}',
    ]


def test_more_than_ten_invalid_symbols_are_counted_not_listed():
    _hub, s = make()
    bad = [f"b${i}" for i in range(12)]
    (err, _sub, _told) = msgs(
        s.receive(orjson.dumps({"op": "subscribe", "symbols": [*bad, "KO"]}).decode(), 0.0)
    )
    assert err["message"] == "invalid symbol " + ", ".join(repr(b) for b in bad[:10]) + f" and 2 more: {RULE}"


def test_too_many_symbols_subscribes_nothing_of_that_request():
    _hub, s = make(max_symbols=3)
    s.receive('{"op":"subscribe","symbols":["A","B"]}', 0.0)
    out = s.receive('{"op":"subscribe","symbols":["C","D","A"]}', 0.0)
    assert out.replies == [
        error("too_many_symbols", "subscription would hold 4 symbols; the limit is 3 per connection")
    ]
    assert out.errors == ["too_many_symbols"] and s.symbols == {"A", "B"}
    assert msgs(s.receive('{"op":"subscribe","symbols":["C"]}', 0.0)) == [
        {"type": "subscribed", "symbols": ["A", "B", "C"], "delayed": [], "rates": {}}
    ]


def test_invalid_and_too_many_in_one_request_give_both_errors_in_order():
    _hub, s = make(max_symbols=1)
    out = s.receive('{"op":"subscribe","symbols":["A","B","$"]}', 0.0)
    assert out.errors == ["invalid_symbol", "too_many_symbols"] and len(out.replies) == 2


def test_deeply_nested_json_is_refused_not_crashed_on():
    _hub, s = make()
    deep = "[" * 300 + "]" * 300
    out = s.receive('{"op":"ping","id":' + deep + "}", 0.0)
    assert out.replies == [error("bad_request", "ping id is nested too deeply to echo")]
    out = s.receive('{"op":"subscribe","symbols":[' + deep + ',"AAPL"]}', 0.0)
    assert out.replies == [
        error("invalid_symbol", f"invalid symbol '<nested value>': {RULE}"),
        b'{"type":"subscribed","symbols":["AAPL"],"delayed":[],"rates":{}}',
        TOLD,
    ]
    too_deep = "[" * 100_000 + "]" * 100_000  # deeper than the JSON parser reads
    assert s.receive(too_deep, 0.0).errors == ["bad_json"]


def test_a_long_invalid_symbol_is_cut_in_the_message():
    _hub, s = make()
    (err, _sub) = msgs(s.receive(orjson.dumps({"op": "subscribe", "symbols": ["$" * 10_000]}).decode(), 0.0))
    assert err["message"] == f"invalid symbol {'$' * 40!r}: {RULE}"


# -- rate limit and flood ------------------------------------------------------------------------
def test_rate_limited_reply_on_the_first_and_every_tenth_drop_then_flood_close():
    _hub, s = make(rate=1.0, burst=25)
    for _ in range(25):  # the burst passes
        assert s.receive('{"op":"ping"}', 0.0).replies == [b'{"type":"pong","id":null}']
    told = []
    for n in range(1, 26):  # 25 dropped in a row: still open
        out = s.receive('{"op":"ping"}', 0.0)
        assert out.close is None
        if out.replies:
            assert out.replies == [error("rate_limited", "too many messages; slow down (message dropped)")]
            assert out.errors == ["rate_limited"]
            told.append(n)
    assert told == [1, 10, 20]
    out = s.receive('{"op":"ping"}', 0.0)  # the 26th in a row passes --rate-burst
    assert out.close is FLOOD and out.replies == [] and out.errors == []
    assert (FLOOD.code, FLOOD.reason, FLOOD.text) == (1008, "flood", "rate limit exceeded")
    assert s.closed is FLOOD
    # after the close decision nothing is answered, even with tokens again
    assert s.receive('{"op":"ping"}', 100.0) == Outcome()


def test_an_accepted_message_takes_one_drop_back_and_starts_a_new_run_of_errors():
    _hub, s = make(rate=1.0, burst=2)
    s.receive('{"op":"ping"}', 0.0)
    s.receive('{"op":"ping"}', 0.0)
    assert s.receive('{"op":"ping"}', 0.0).errors == ["rate_limited"]
    assert s.receive('{"op":"ping"}', 0.0).errors == []  # dropped silently: two drops
    assert s.receive('{"op":"ping"}', 1.0).replies == [
        b'{"type":"pong","id":null}'
    ]  # one token at t=1: one back
    out = s.receive('{"op":"ping"}', 1.0)
    assert out.errors == ["rate_limited"] and out.close is None  # a new run of drops is told again: two net
    assert s.receive('{"op":"ping"}', 1.0).close is FLOOD  # three net > burst 2


def test_the_rate_limit_counts_every_message_before_parsing_it():
    _hub, s = make(rate=1.0, burst=1)
    assert s.receive(b"binary", 0.0).errors == ["bad_request"]
    assert s.receive("not json", 0.0).errors == ["rate_limited"]


# -- the URL query -------------------------------------------------------------------------------
def test_ws_query_subscribes_like_a_message():
    _hub, s = make()
    out = s.open("nvda,bad$,,TSLA,nvda")
    assert out.replies == [
        error("invalid_symbol", f"invalid symbol 'bad$': {RULE}"),
        b'{"type":"subscribed","symbols":["NVDA","TSLA"],"delayed":[],"rates":{}}',
        TOLD,
    ]
    assert out.errors == ["invalid_symbol"]


def test_ws_query_without_symbols():
    _hub, s = make()
    assert s.open("") == Outcome()
    assert s.open(",,").replies == [
        b'{"type":"subscribed","symbols":[],"delayed":[],"rates":{}}'
    ]  # named, but empty


def test_ws_query_past_the_cap():
    _hub, s = make(max_symbols=2)
    assert s.open("A,B,C").replies == [
        error("too_many_symbols", "subscription would hold 3 symbols; the limit is 2 per connection")
    ]


def test_query_symbols_validates_in_one_place():
    assert query_symbols("aapl, MSFT,,aapl", 5, "connection") == ["AAPL", "MSFT"]
    assert query_symbols("", 5, "request") == [] and query_symbols(" , ", 5, "request") == []
    with pytest.raises(InvalidSymbol) as bad:
        query_symbols("AAPL,bad$,no way", 5, "connection")
    assert (bad.value.code, bad.value.message) == (
        "invalid_symbol",
        f"invalid symbol 'bad$', 'no way': {RULE}",
    )
    with pytest.raises(InvalidSymbol):  # syntax is checked before the count
        query_symbols("A,B,$", 2, "connection")


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ("connection", "3 symbols requested; the limit is 2 per connection"),  # /sse
        ("request", "3 symbols requested; the limit is 2 per request"),  # /api/quotes: no subscription
    ],
)
def test_a_query_past_the_limit_says_how_many_were_requested(scope: Any, message: str):
    with pytest.raises(TooManySymbols) as many:
        query_symbols("A,B,C,a", 2, scope)
    assert (many.value.code, many.value.message, many.value.limit, many.value.wanted) == (
        "too_many_symbols",
        message,
        2,
        3,
    )


def test_stream_opens_with_a_snapshot_or_subscribes_nothing():
    hub, _s = make(max_symbols=2)
    hub.publish(Quote("AAPL", 1.0, 1), 0.0)
    snap = orjson.loads(open_stream(hub, "c", ["AAPL", "MSFT"]))
    assert snap["type"] == "snapshot" and [e["s"] for e in snap["data"]] == ["AAPL"]
    assert hub.symbols_of("c") == {"AAPL", "MSFT"}
    hub2: Hub[str] = Hub(max_symbols=2)
    hub2.add("d")
    with pytest.raises(TooManySymbols) as many:
        open_stream(hub2, "d", ["A", "B", "C"])
    assert many.value.message == "subscription would hold 3 symbols; the limit is 2 per connection"
    assert hub2.symbols_of("d") == frozenset() and hub2.demand() == frozenset()
    hub3: Hub[str] = Hub()
    hub3.epoch = EPOCH
    hub3.add("e")
    assert orjson.loads(open_stream(hub3, "e", ["KO"])) == {"type": "snapshot", "e": EPOCH, "data": []}


# -- the end of a connection ---------------------------------------------------------------------
class Conn:
    """A connection that holds its session, as the WebSocket transport does."""

    session: Session[Conn] | None = None


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Only reference counts free objects: whatever a cycle holds stays alive."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def test_a_released_session_lets_its_connection_go_without_the_collector(no_collector: None):
    hub: Hub[Conn] = Hub()
    conn = Conn()
    hub.add(conn)
    conn.session = session = Session(hub, conn, 1000.0, 1000, 0.0)
    session.receive('{"op":"subscribe","symbols":["AAPL"]}', 0.0)
    assert session.symbols == {"AAPL"}
    gone = weakref.ref(conn)
    hub.remove(conn)  # the transport's unregister
    session.release()  # ... and its on_close
    del conn
    assert gone() is None, "the session still holds its connection: it lives until the collector runs"
    # a released session ignores any input, even one queued before the close was seen
    assert session.receive('{"op":"subscribe","symbols":["MSFT"]}', 0.0) == Outcome()
    assert session.receive('{"op":"ping"}', 0.0) == Outcome()
    assert session.open("MSFT") == Outcome()
    assert session.symbols == frozenset() and hub.demand() == frozenset()


# -- the error hierarchy and the close decisions ---------------------------------------------------
def test_errors_carry_their_wire_code():
    assert issubclass(InvalidSymbol, ProtocolError) and issubclass(InvalidSymbol, ValueError)
    assert issubclass(TooManySymbols, ProtocolError)
    exc = InvalidSymbol("bad$")
    assert (exc.code, str(exc), exc.symbols) == (
        "invalid_symbol",
        f"invalid symbol 'bad$': {RULE}",
        ("bad$",),
    )
    assert InvalidSymbol(3).message == f"invalid symbol 'int': {RULE}"
    assert set(errors.ERROR_CODES) == {
        "bad_json",
        "bad_request",
        "unknown_op",
        "invalid_symbol",
        "too_many_symbols",
        "rate_limited",
        "unauthorized",
        "forbidden_symbol",
        "unknown_symbol",
        "too_many_bar_subscriptions",
    }


def test_the_core_errors_share_one_base():
    for exc in (ProtocolError, InvalidSymbol, TooManySymbols, MalformedQuote, OptionError):
        assert issubclass(exc, CoreError), exc
    for exc in (InvalidSymbol, MalformedQuote, OptionError):  # argparse types and parsers raise them
        assert issubclass(exc, ValueError), exc
    assert not issubclass(ProtocolError, ValueError)
    assert str(OptionError("must be positive")) == "must be positive"


def test_close_decisions_keep_code_and_metric_label_together():
    table = {
        d.reason: d.code
        for d in (errors.CLIENT, errors.SHUTDOWN, FLOOD, errors.SLOW_CONSUMER, errors.PING_TIMEOUT)
    }
    assert table == {
        "client": 1000,
        "shutdown": 1001,
        "flood": 1008,
        "slow_consumer": 1013,
        "ping_timeout": 1006,
    }
    assert errors.SHUTDOWN.text == "server shutting down"
    assert errors.SLOW_CONSUMER.text == "slow consumer: not reading fast enough"
    with pytest.raises(dataclasses.FrozenInstanceError):
        FLOOD.code = 1000  # type: ignore[misc]
