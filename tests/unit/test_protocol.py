"""The wire protocol and frame builders, without a network."""

from __future__ import annotations

import orjson
import pytest

from ticker import protocol
from ticker.errors import InvalidSymbol, ProtocolError, invalid_symbols_message
from ticker.frames import HEAD_TABLE, sse_event, ws_text_frame
from ticker.protocol import parse_client_message
from ticker.symbols import normalize_symbol, parse_symbol_list, valid_symbol


def test_subscribe_normalizes_and_splits_invalid():
    cmd = parse_client_message('{"op":"subscribe","symbols":["aapl","MSFT","aapl","bad$",7,"BTC-USD","x"]}')
    assert isinstance(cmd, protocol.Subscribe)
    assert cmd.symbols == ["AAPL", "MSFT", "BTC-USD", "X"]
    assert cmd.invalid == ["bad$", "7"]


def test_unsubscribe_and_ping():
    cmd = parse_client_message(b'{"op":"unsubscribe","symbols":["msft"]}')
    assert isinstance(cmd, protocol.Unsubscribe) and cmd.symbols == ["MSFT"]
    ping = parse_client_message('{"op":"ping","id":{"n":[1,2]}}')
    assert isinstance(ping, protocol.Ping) and ping.id == {"n": [1, 2]}
    assert orjson.loads(protocol.pong(ping.id)) == {"type": "pong", "id": {"n": [1, 2]}}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("{", "bad_json"),
        ("[1,2]", "bad_request"),
        ('"subscribe"', "bad_request"),
        ('{"symbols":["A"]}', "bad_request"),
        ('{"op":5}', "bad_request"),
        ('{"op":"subscribe"}', "bad_request"),
        ('{"op":"subscribe","symbols":"AAPL"}', "bad_request"),
        ('{"op":"dance"}', "unknown_op"),
    ],
)
def test_bad_frames(frame, code):
    with pytest.raises(ProtocolError) as info:
        parse_client_message(frame)
    assert info.value.code == code
    assert info.value.message


@pytest.mark.parametrize("sym", ["A", "BRK.B", "BTC-USD", "EUR/USD", "X:BTCUSD", "ES_F", "Z" * 32, "aapl"])
def test_valid_symbols(sym):
    assert normalize_symbol(sym) == sym.upper() == valid_symbol(sym)
    assert valid_symbol(f" {sym} ") == sym.upper()


@pytest.mark.parametrize("sym", ["", " ", "Z" * 33, "A B", "AAPL$", "ÄPFEL", None, 3, ["A"]])
def test_invalid_symbols(sym):
    assert valid_symbol(sym) is None
    with pytest.raises(InvalidSymbol) as info:
        normalize_symbol(sym)
    assert info.value.symbols == (sym,)


def test_splitting_symbols_builds_no_exception(monkeypatch: pytest.MonkeyPatch):
    def built(*args: object) -> None:
        raise AssertionError("an InvalidSymbol was built on the inbound path")

    monkeypatch.setattr(InvalidSymbol, "__init__", built)
    assert protocol.split_symbols(["aapl", "bad$", 7, "AAPL", None]) == (["AAPL"], ["bad$", "7", "null"])
    cmd = parse_client_message('{"op":"subscribe","symbols":["$","msft"]}')
    assert isinstance(cmd, protocol.Subscribe) and (cmd.symbols, cmd.invalid) == (["MSFT"], ["$"])


def test_parse_symbol_list():
    assert parse_symbol_list("aapl, MSFT,,aapl") == ["AAPL", "MSFT"]


def test_invalid_symbol_message_names_symbols():
    msg = invalid_symbols_message(["bad$", "no way"])
    assert "'bad$'" in msg and "'no way'" in msg


def test_encode_quotes_joins_entries():
    payload = protocol.encode_quotes(protocol.QUOTES, [b'{"s":"A"}', b'{"s":"B"}'])
    assert orjson.loads(payload) == {"type": "quotes", "data": [{"s": "A"}, {"s": "B"}]}


@pytest.mark.parametrize("n", [0, 5, 125, 126, 65535, 65536, 100_000])
def test_ws_text_frame_lengths(n):
    payload = b"x" * n
    frame = ws_text_frame(payload)
    assert frame[0] == 0x81
    if n < 126:
        assert frame[1] == n and frame[2:] == payload
    elif n < 65536:
        assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == n and frame[4:] == payload
    else:
        assert frame[1] == 127 and int.from_bytes(frame[2:10], "big") == n and frame[10:] == payload


def test_ws_text_frame_headers_from_the_table_are_those_rfc_6455_gives():
    for n in (*range(0, 300), HEAD_TABLE - 1, HEAD_TABLE, HEAD_TABLE + 1):
        head = bytes((0x81, n)) if n < 126 else bytes((0x81, 126)) + n.to_bytes(2, "big")
        assert ws_text_frame(b"y" * n) == head + b"y" * n, n


def test_sse_event():
    assert sse_event("quotes", b'{"a":1}') == b'event: quotes\ndata: {"a":1}\n\n'


def test_sse_framer_names_the_event_by_the_payload_type():
    from ticker.server.sse import quotes_frame

    snap = quotes_frame(protocol.encode_quotes(protocol.SNAPSHOT, [b'{"s":"A"}']))
    assert b"\nevent: snapshot\ndata: " in snap and snap.endswith(b"\n\n\r\n")
    assert b"\nevent: quotes\ndata: " in quotes_frame(protocol.encode_quotes(protocol.QUOTES, []))


def test_deeply_nested_values_are_refused_not_crashed_on():
    deep = "[" * 300 + "]" * 300
    with pytest.raises(ProtocolError) as info:
        parse_client_message('{"op":"ping","id":' + deep + "}")
    assert info.value.code == "bad_request"
    cmd = parse_client_message('{"op":"subscribe","symbols":[' + deep + ',"AAPL"]}')
    assert (
        isinstance(cmd, protocol.Subscribe) and cmd.symbols == ["AAPL"] and cmd.invalid == ["<nested value>"]
    )
    long_bad = "$" * 10_000
    cmd = parse_client_message(orjson.dumps({"op": "subscribe", "symbols": [long_bad]}))
    assert isinstance(cmd, protocol.Subscribe) and len(cmd.invalid[0]) <= 40
