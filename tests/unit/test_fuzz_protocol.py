"""Property tests (Hypothesis) of the pure wire protocol: any input gives a command or a documented error.

The parser, the symbol rules, the URL queries of /sse and /api/*, the Q entry decoder and the interval
names are fed any bytes, any text and any JSON value (deeply nested, huge numbers, non-UTF-8 included);
each answers with a value or one of its documented errors, never with another exception.
"""

from __future__ import annotations

import math
import string
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from tests.support.schemas import protocol_schemas
from ticker import protocol
from ticker.bars import INTERVALS, MAX_LIMIT, InvalidInterval, parse_interval
from ticker.errors import (
    BAD_JSON,
    BAD_REQUEST,
    ERROR_CODES,
    INVALID_SYMBOL,
    TOO_MANY_BAR_SUBSCRIPTIONS,
    TOO_MANY_SYMBOLS,
    UNKNOWN_OP,
    InvalidSymbol,
    MalformedQuote,
    ProtocolError,
)
from ticker.quote import Quote, decode_entry, encode_entry
from ticker.session import query_bars, query_symbols
from ticker.symbols import SYMBOL_RE, valid_symbol
from ticker.views import FIELDS

CLIENT_SCHEMA, SERVER_SCHEMA = protocol_schemas()
CLIENT = jsonschema.Draft202012Validator(CLIENT_SCHEMA)
SERVER = jsonschema.Draft202012Validator(SERVER_SCHEMA)
OPS = ("subscribe", "unsubscribe", "subscribe_bars", "unsubscribe_bars", "options", "ping", "auth", "refresh")
#: What the parser may refuse a frame with (docs/protocol.md, "Errors").
PARSE_CODES = {BAD_JSON, BAD_REQUEST, UNKNOWN_OP, INVALID_SYMBOL}
ASCII_SPACE = " \t\n\r\f\v"  # the padding a symbol may have (docs/protocol.md)
SYMBOL_CHARS = string.ascii_letters + string.digits + ".-:/_"

# -- strategies ------------------------------------------------------------------------------------
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
symbolish = (
    st.sampled_from(["AAPL", "msft", " brk.b ", "BTC-USD", "EUR/USD", "X:BTCUSD", "A" * 32, "A" * 33, ""])
    | st.sampled_from(
        ["\ufb01", "\u00df", "\u00a0AAPL", "AAPL\u00a0", "\u0131bm", "\u212a", "AAPL\n", "A\x00"]
    )
    | st.text(alphabet=SYMBOL_CHARS + " \t$\u00e9\u0130", max_size=36)
)
field_values = json_values | symbolish | st.sampled_from(list(INTERVALS)) | st.integers(-10, MAX_LIMIT + 10)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """An object with a known op (or a near miss) and arbitrary, often well-typed, fields."""
    msg: dict[str, Any] = {
        "op": draw(st.sampled_from(OPS) | st.sampled_from(["PING", "subscribe ", "", "bars"]) | json_values)
    }
    for key in draw(
        st.sets(
            st.sampled_from(
                ["symbols", "symbol", "interval", "history", "id", "token", "max_hz", "fields", "delta", "x"]
            )
        )
    ):
        if key == "symbols":
            msg[key] = draw(st.lists(symbolish | json_values, max_size=6) | json_values)
        elif key == "fields":
            msg[key] = draw(st.lists(st.sampled_from(FIELDS) | st.text(max_size=4), max_size=4) | json_values)
        elif key == "max_hz":
            msg[key] = draw(
                st.floats(allow_nan=True) | st.sampled_from([0.1, 0.09999, 2, 1e9, True]) | json_values
            )
        elif key == "token":
            msg[key] = draw(st.text(max_size=20) | st.just("t" * 8193) | json_values)
        else:
            msg[key] = draw(field_values)
    return msg


schema_symbols = st.from_regex(r"[A-Za-z0-9.\-:/_]{1,32}", fullmatch=True)
extra = {"x": json_values}
#: Requests as the client schema of docs/protocol.md describes them (extra fields allowed).
valid_requests = (
    st.fixed_dictionaries(
        {
            "op": st.sampled_from(["subscribe", "unsubscribe"]),
            "symbols": st.lists(schema_symbols, max_size=5),
        },
        optional=extra,
    )
    | st.fixed_dictionaries(
        {
            "op": st.just("subscribe"),
            "symbols": st.lists(schema_symbols, max_size=5),
            "max_hz": st.floats(0.1, 1e6),
        },
        optional=extra,
    )
    | st.fixed_dictionaries(
        {"op": st.just("options"), "delta": st.booleans()},
        optional={"fields": st.none() | st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4), **extra},
    )
    | st.fixed_dictionaries({"op": st.just("ping")}, optional={"id": json_values, **extra})
    | st.fixed_dictionaries(
        {"op": st.sampled_from(["auth", "refresh"]), "token": st.text(min_size=1, max_size=64)},
        optional=extra,
    )
    | st.fixed_dictionaries(
        {
            "op": st.sampled_from(["subscribe_bars", "unsubscribe_bars"]),
            "symbol": schema_symbols,
            "interval": st.sampled_from(list(INTERVALS)),
        },
        optional={"history": st.integers(0, MAX_LIMIT), **extra},
    )
)


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


frames = (
    st.binary(max_size=64)
    | st.text(max_size=64)
    | json_values.map(orjson.dumps)
    | requests().map(orjson.dumps)
    | requests().map(lambda m: orjson.dumps(m).decode())
    | valid_requests.map(orjson.dumps)
    | st.integers(1, 1200).map(lambda d: '{"op":"ping","id":' + nested(d) + "}")
    | st.integers(1, 1200).map(lambda d: '{"op":"subscribe","symbols":[' + nested(d) + "]}")
    | st.integers(1, 400).map(lambda n: '{"op":"ping","id":' + "9" * n + "}")
    | st.sampled_from(["\ud800", '{"op":"ping","id":"\\ud800"}', '{"op":"ping","id":1e400}', "-0", "NaN"])
)


# -- the parser ------------------------------------------------------------------------------------
def check_command(data: str | bytes, cmd: protocol.Command) -> None:
    """What a parsed command promises (docs/protocol.md, "Client → server")."""
    msg = orjson.loads(data)
    if isinstance(cmd, protocol.Subscribe | protocol.Unsubscribe):
        assert all(SYMBOL_RE.match(s) for s in cmd.symbols) and len(set(cmd.symbols)) == len(cmd.symbols)
        assert all(isinstance(s, str) and len(s) <= 40 for s in cmd.invalid)
        assert len(cmd.symbols) + len(cmd.invalid) <= len(msg["symbols"])
    elif isinstance(cmd, protocol.Ping):
        assert cmd.id == msg.get("id") and len(orjson.dumps(cmd.id)) <= protocol.MAX_PING_ID_BYTES
        pong = orjson.loads(protocol.pong(cmd.id))
        assert SERVER.is_valid(pong) and pong["id"] == msg.get("id")
    elif isinstance(cmd, protocol.Auth):
        assert 1 <= len(cmd.token) <= protocol.MAX_TOKEN_CHARS and cmd.refresh == (msg["op"] == "refresh")
    elif isinstance(cmd, protocol.Options):
        assert cmd.fields is protocol.UNCHANGED or cmd.fields is None or set(cmd.fields) <= set(FIELDS)
        assert cmd.delta in (True, False) or cmd.delta is protocol.UNCHANGED
    else:
        assert SYMBOL_RE.match(cmd.symbol) and cmd.interval in INTERVALS
        if isinstance(cmd, protocol.SubscribeBars):
            assert 0 <= cmd.history <= MAX_LIMIT


@given(frames)
@example(b"\xff\xfe")
@example(b'{"op":"subscribe","symbols":["\xe9"]}')
@example('{"op":"ping","id":' + nested(300) + "}")
@example('{"op":"subscribe","symbols":[' + nested(300) + "]}")
@example('{"op":"ping","id":18446744073709551616}')
def test_any_frame_parses_to_a_command_or_a_documented_error(data: str | bytes) -> None:
    try:
        cmd = protocol.parse_client_message(data)
    except ProtocolError as exc:
        assert exc.code in PARSE_CODES
        reply = orjson.loads(protocol.error(exc.code, exc.message))  # the reply the session builds of it
        assert SERVER.is_valid(reply), reply
        return
    check_command(data, cmd)


@given(valid_requests)
def test_a_request_the_client_schema_accepts_is_parsed_without_error(msg: dict[str, Any]) -> None:
    assert CLIENT.is_valid(msg)
    assume(len(orjson.dumps(msg.get("id"))) <= protocol.MAX_PING_ID_BYTES)  # the echoed id is capped
    cmd = protocol.parse_client_message(orjson.dumps(msg))
    if isinstance(cmd, protocol.Subscribe | protocol.Unsubscribe):
        assert cmd.invalid == []


def test_the_documented_error_codes_are_the_core_s():
    (error,) = [b for b in SERVER_SCHEMA["oneOf"] if b["properties"]["type"].get("const") == "error"]
    assert error["properties"]["code"]["enum"] == list(ERROR_CODES)


# -- symbols ---------------------------------------------------------------------------------------
@given(symbolish | json_values | st.text())
@example("\ufb01")  # "ﬁ": upper-cased it would be "FI"
@example("\u00df")  # "ß" → "SS"
@example("\u00a0AAPL")  # a no-break space
@example("\u0131bm")  # dotless i → "IBM"
@example("\u212a")  # Kelvin sign → "K" under some foldings
@example("\x1fAAPL")  # a separator str.strip() would take, and no ASCII whitespace
@example("\t aapl \r\n")
def test_valid_symbol_never_raises_and_keeps_to_the_documented_rules(raw: object) -> None:
    sym = valid_symbol(raw)
    ascii_rule = (
        isinstance(raw, str) and raw.isascii() and SYMBOL_RE.match(raw.strip(ASCII_SPACE).upper()) is not None
    )
    if sym is None:
        assert not ascii_rule
    else:
        assert ascii_rule and isinstance(raw, str) and sym == raw.strip(ASCII_SPACE).upper()


@given(st.text(alphabet=SYMBOL_CHARS + ", \u00e9$", max_size=80) | st.text(max_size=40), st.integers(0, 6))
@example("\ud800,AAPL", 5)
@example(",,, ,", 5)
def test_query_symbols_returns_valid_symbols_or_a_documented_refusal(query: str, limit: int) -> None:
    try:
        symbols = query_symbols(query, limit, "request")
    except ProtocolError as exc:
        assert exc.code in (INVALID_SYMBOL, TOO_MANY_SYMBOLS)
        if isinstance(exc, InvalidSymbol):
            assert exc.symbols
        orjson.dumps({"error": {"code": exc.code, "message": exc.message}})  # the HTTP body encodes
        return
    assert len(symbols) <= limit and len(set(symbols)) == len(symbols)
    assert all(SYMBOL_RE.match(s) for s in symbols)


@given(
    st.text(alphabet=SYMBOL_CHARS + ",: 1smhd\u00e9", max_size=80) | st.text(max_size=40), st.integers(0, 4)
)
@example("AAPL:1m,msft:5m,X:BTCUSD:1h", 4)
@example("AAPL", 4)
@example("\ud800:1m", 4)
def test_query_bars_returns_pairs_or_a_documented_refusal(query: str, limit: int) -> None:
    try:
        pairs = query_bars(query, limit)
    except ProtocolError as exc:
        assert exc.code in (INVALID_SYMBOL, BAD_REQUEST, TOO_MANY_BAR_SUBSCRIPTIONS)
        orjson.dumps({"error": {"code": exc.code, "message": exc.message}})
        return
    assert len(pairs) <= limit and len(set(pairs)) == len(pairs)
    assert all(SYMBOL_RE.match(s) and i in INTERVALS for s, i in pairs)


@given(json_values | st.sampled_from(list(INTERVALS)) | st.text(max_size=4))
def test_parse_interval_names_exactly_the_documented_intervals(text: object) -> None:
    try:
        assert parse_interval(text) == text and text in INTERVALS
    except InvalidInterval as exc:
        assert exc.code == BAD_REQUEST and not (isinstance(text, str) and text in INTERVALS)
        orjson.dumps(exc.message)


# -- Q entries -------------------------------------------------------------------------------------
numbers = (
    st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=1e-320, max_value=1e-300)
    | st.sampled_from([1e308, -1e308, 5e-324, 0, 0.0, -0.0])
)
Q_FIELDS = ("s", "p", "b", "a", "v", "c", "cp", "o", "h", "l", "pc", "vw", "t", "q")
entries = st.fixed_dictionaries(
    {
        "s": st.sampled_from(["AAPL", "BTC-USD"]) | st.text(max_size=3) | json_values,
        "p": numbers | json_values,
    },
    optional={k: numbers | json_values | st.just(None) for k in Q_FIELDS[2:]},
)


@given(entries | json_values, st.booleans())
def test_decode_entry_gives_a_quote_or_malformed_quote(obj: Any, sequenced: bool) -> None:
    try:
        quote = decode_entry(obj, sequenced=sequenced)
    except MalformedQuote as exc:
        assert exc.field is None or exc.field in Q_FIELDS
        return
    assert isinstance(quote, Quote) and quote.symbol == obj["s"] and (quote.seq >= 1 or not sequenced)
    for value in (quote.price, quote.bid, quote.ask, quote.volume, quote.prev_close, quote.vwap):
        assert value is None or (type(value) in (int, float) and math.isfinite(value))
    # what the hub does next with a decoded quote: encode it for clients (a Redis edge, a recording)
    wire = orjson.loads(encode_entry(quote, max(quote.seq, 1)))
    assert wire["s"] == quote.symbol and wire["p"] == quote.price and wire["t"] == quote.ts_ms
    if SYMBOL_RE.match(quote.symbol):
        assert SERVER.is_valid({"type": "quotes", "data": [wire]}), wire


@pytest.mark.parametrize("price, prev_close", [(1e303, 1.0), (1.0, 5e-324), (-1e308, 1e308)])
def test_encode_entry_of_extreme_finite_prices_does_not_raise(price: float, prev_close: float) -> None:
    wire = orjson.loads(encode_entry(Quote("AAPL", price, 1, prev_close=prev_close), 1))
    assert wire["p"] == price and wire["pc"] == prev_close
    assert all(math.isfinite(wire[k]) for k in ("c", "cp") if k in wire)
