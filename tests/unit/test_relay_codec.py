"""The relay's frames and messages between the --workers feed process and its workers (ticker/relay.py)."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticker import relay
from ticker.bars import Bar
from ticker.directory import SymbolInfo
from ticker.quote import Quote, encode_entry
from ticker.status import CLOSED, UNAVAILABLE, SymbolStatus


def body(framed: bytes) -> bytes:
    n = relay.frame_length(framed[: relay.HEADER])
    assert len(framed) == relay.HEADER + n
    return framed[relay.HEADER :]


def one(framed: bytes) -> relay.RelayMessage:
    return relay.decode(body(framed))


def test_a_frame_is_its_length_then_its_body() -> None:
    framed = relay.frame(b'{"t":"d","s":[]}')
    assert framed[:4] == (16).to_bytes(4, "big") and body(framed) == b'{"t":"d","s":[]}'


@pytest.mark.parametrize("header", [b"\0\0\0\0", (relay.MAX_FRAME + 1).to_bytes(4, "big"), b"\0\0\1"])
def test_a_frame_header_out_of_bounds_is_refused(header: bytes) -> None:
    with pytest.raises(relay.RelayError):
        relay.frame_length(header)


def test_a_body_over_the_cap_is_not_framed() -> None:
    with pytest.raises(relay.RelayError, match="over the limit"):
        relay.frame(b" " * (relay.MAX_FRAME + 1))


def test_quotes_keep_their_source_numbers_and_split_into_bounded_frames() -> None:
    quotes = [Quote(f"S{i % 7}", 100.0 + i, 1_700_000_000_000 + i, volume=i, seq=i + 1) for i in range(2_500)]
    frames = relay.quotes(3, [encode_entry(q, q.seq) for q in quotes])
    assert len(frames) == 3  # 1,000 entries a frame at most
    got: list[Quote] = []
    for f in frames:
        msg = one(f)
        assert isinstance(msg, relay.RelayQuotes) and msg.feed == 3
        got += msg.quotes
    assert got == quotes


def test_a_catch_up_belongs_to_no_feed() -> None:
    q = Quote("AAPL", 228.5, 1_700_000_000_000, seq=9)
    [f] = relay.quotes(None, [encode_entry(q, q.seq)])
    assert body(f).startswith(b'{"t":"c"') and one(f) == relay.RelayQuotes(None, [q])


def test_every_message_round_trips() -> None:
    state = relay.RelayFeedState(
        True, 0.25, "", True, 50, {"AAPL": SymbolStatus(CLOSED, "market closed")}, ["AAPL", "MSFT"]
    )
    b = Bar(1_700_000_000_000, 1.0, 2.0, 0.5, 1.5, 300)
    cases: list[tuple[bytes, relay.RelayMessage]] = [
        (
            relay.hello("ab12:3", ["simulated", "finnhub"]),
            relay.RelayHello("ab12:3", ("simulated", "finnhub")),
        ),
        (relay.bar(1, "AAPL", "1m", b, True), relay.RelayBar(1, "AAPL", "1m", b, True)),
        (relay.error_event(0, "malformed"), relay.RelayEvent(0, "malformed")),
        (relay.reconnect_event(2), relay.RelayEvent(2, None)),
        (relay.status([state]), relay.RelayStatus([state])),
        (relay.reply(7, [1, 2]), relay.RelayReply(7, [1, 2])),
        (
            relay.reply_error(8, "rate limited upstream", 30.0),
            relay.RelayReply(8, None, "rate limited upstream", 30.0),
        ),
        (relay.join(1, None, 0), relay.RelayJoin(1, None, 0)),
        (relay.join(0, "ab12", 41), relay.RelayJoin(0, "ab12", 41)),
        (relay.demand({"MSFT", "AAPL"}), relay.RelayDemand(frozenset({"AAPL", "MSFT"}))),
        (relay.reference_request(3, 1), relay.RelayRequest(3, 1, relay.REFERENCE)),
        (
            relay.history_request(4, 0, "AAPL", "1d", 10, 20),
            relay.RelayRequest(4, 0, relay.HISTORY, ("AAPL", "1d", 10, 20)),
        ),
    ]
    for framed, expected in cases:
        assert one(framed) == expected


def test_a_report_leaves_out_an_unchanged_offer() -> None:
    state = relay.RelayFeedState(False, None, "connecting", False, None, {})
    framed = relay.status([state])
    assert b"known" not in body(framed)
    msg = one(framed)
    assert isinstance(msg, relay.RelayStatus) and msg.feeds[0].known is None


def test_directory_and_history_replies_round_trip() -> None:
    entries = [
        SymbolInfo("AAPL", "Apple Inc.", "NASDAQ"),
        SymbolInfo("BTC-USD", "Bitcoin", "", "crypto", "USD"),
    ]
    bars = [Bar(60_000, 1.0, 2.0, 0.5, 1.5, 10), Bar(120_000, 1.5, 1.5, 1.5, 1.5)]
    assert relay.decode_reference(orjson.loads(orjson.dumps(relay.encode_reference(entries)))) == entries
    assert relay.decode_bars(orjson.loads(orjson.dumps(relay.encode_bars(bars)))) == bars
    assert relay.decode_reference(relay.encode_reference(None)) is None
    assert relay.decode_bars(relay.encode_bars(None)) is None
    with pytest.raises(relay.RelayError):
        relay.decode_reference([["AAPL", "Apple"]])
    with pytest.raises(relay.RelayError):
        relay.decode_bars([[1.5, 1, 1, 1, 1, 1]])  # t must be an integer


@pytest.mark.parametrize(
    ("obj", "says"),
    [
        ([1, 2], "expected an object"),
        ({"t": "nope"}, "unknown message type"),
        ({"t": "q", "f": 0, "q": [{"s": "AAPL", "p": 1.0, "t": 1}]}, "a quote"),  # no q: not numbered
        ({"t": "q", "f": 0, "q": [{"s": "AAPL", "p": 1.0, "t": 1, "q": 0}]}, "a quote"),
        ({"t": "q", "f": -1, "q": []}, "'f'"),
        ({"t": "hello", "v": 2, "epoch": "ab", "feeds": []}, "version"),
        ({"t": "hello", "v": 1, "epoch": "a b", "feeds": []}, "'epoch'"),
        ({"t": "join", "w": 0, "epoch": None, "floor": "9"}, "'floor'"),
        ({"t": "d", "s": ["AAPL", 3]}, "'s'"),
        ({"t": "req", "id": 1, "f": 0, "k": "hist", "a": ["AAPL", "2m", 0, 1]}, "'a'"),
        ({"t": "req", "id": 1, "f": 0, "k": "hist", "a": ["AAPL", ["1m"], 0, 1]}, "'a'"),
        ({"t": "bar", "f": 0, "s": "AAPL", "i": {}, "b": [1, 1, 1, 1, 1, 1], "x": True}, "'i'"),
        (
            {
                "t": "st",
                "f": [
                    {
                        "up": True,
                        "age": None,
                        "reason": "",
                        "steady": True,
                        "limit": None,
                        "states": {"AAPL": ["gone", ""]},
                    }
                ],
            },
            "AAPL",
        ),
        ({"t": "rep", "id": 1}, "'ok' or 'err'"),
    ],
)
def test_malformed_messages_are_refused_with_what_is_wrong(obj: Any, says: str) -> None:
    with pytest.raises(relay.RelayError, match=says):
        relay.decode(orjson.dumps(obj))


def test_a_body_that_is_not_json_is_refused() -> None:
    with pytest.raises(relay.RelayError, match="not JSON"):
        relay.decode(b"\xff{")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=5),
    max_leaves=20,
)
types = st.sampled_from(["q", "c", "st", "d", "rep", "req", "bar", "err", "rc", "join", "hello"])


KEYS = ["f", "q", "s", "i", "b", "x", "k", "a", "id", "w", "epoch", "floor", "feeds", "v", "ok", "err", "ra"]


@given(t=types, rest=st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6))
def test_any_message_decodes_or_is_refused_as_malformed(t: str, rest: dict[str, Any]) -> None:
    # RelayError is the only error a peer's input may cause: the link is dropped and made again
    with contextlib.suppress(relay.RelayError):
        relay.decode(orjson.dumps({**rest, "t": t}))


def test_states_travel_with_their_reasons() -> None:
    state = relay.RelayFeedState(
        True, 1.0, "", False, 2, {"NVDA": SymbolStatus(UNAVAILABLE, "over the limit")}
    )
    msg = one(relay.status([state]))
    assert isinstance(msg, relay.RelayStatus)
    assert (
        msg.feeds[0].states == {"NVDA": SymbolStatus(UNAVAILABLE, "over the limit")}
        and msg.feeds[0].limit == 2
    )
