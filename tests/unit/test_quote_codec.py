"""The one codec of the Q entry: the hub's, Redis', the recordings' and the client's forms, and what it refuses."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from feeds.recording import format as recording
from ticker.broker import redis_layout as rc
from ticker.client import Quote as ClientQuote
from ticker.errors import MalformedQuote
from ticker.quote import Quote, decode_entry, encode_entry

Q = {
    "s": "AAPL",
    "p": 228.61,
    "b": 228.59,
    "a": 228.63,
    "v": 3794800,
    "c": 0.11,
    "cp": 0.0481,
    "t": 1795297376498,
    "q": 3,
}


def loads(data: bytes) -> dict[str, Any]:
    d = orjson.loads(data)
    assert isinstance(d, dict)
    return d


def test_client_quote_is_the_core_quote() -> None:
    assert ClientQuote is Quote


# -- the hub's form: what clients get ------------------------------------------------------------
def test_hub_form_derives_change_and_omits_missing() -> None:
    q = Quote("AAPL", 101.0, 1_700_000_000_000, prev_close=100.0)
    assert loads(encode_entry(q, 5)) == {
        "s": "AAPL",
        "p": 101.0,
        "c": 1.0,
        "cp": 1.0,
        "pc": 100.0,
        "t": 1_700_000_000_000,
        "q": 5,
    }
    q2 = Quote("X", 2.0, 1, bid=1.9, ask=2.1, volume=10, change=0.5, change_percent=33.3)
    assert loads(encode_entry(q2, 1)) == {
        "s": "X",
        "p": 2.0,
        "b": 1.9,
        "a": 2.1,
        "v": 10,
        "c": 0.5,
        "cp": 33.3,
        "t": 1,
        "q": 1,
    }


def test_hub_form_is_compact_json_in_protocol_order() -> None:
    q = Quote(
        "AAPL",
        228.61,
        1795297376498,
        bid=228.59,
        ask=228.63,
        volume=3794800,
        change=0.11,
        change_percent=0.0481,
    )
    assert encode_entry(q, 3) == (
        b'{"s":"AAPL","p":228.61,"b":228.59,"a":228.63,"v":3794800,"c":0.11,"cp":0.0481,"t":1795297376498,"q":3}'
    )


def test_provider_change_wins_over_the_derived_one() -> None:
    q = Quote("X", 101.0, 1, change=2.0, prev_close=100.0)
    assert loads(encode_entry(q, 1)) == {
        "s": "X",
        "p": 101.0,
        "c": 2.0,
        "cp": 2.0,
        "pc": 100.0,
        "t": 1,
        "q": 1,
    }
    zero = Quote("X", 101.0, 1, prev_close=0.0)  # no division by a zero close: nothing derived
    assert loads(encode_entry(zero, 1)) == {"s": "X", "p": 101.0, "pc": 0.0, "t": 1, "q": 1}


def test_derived_change_is_rounded_to_6_and_4_decimals_either_side_of_the_close() -> None:
    up = loads(encode_entry(Quote("X", 228.51, 1, prev_close=228.5), 1))
    assert (up["c"], up["cp"]) == (0.01, 0.0044)
    down = loads(encode_entry(Quote("X", 0.12345, 1, prev_close=0.13), 1))
    assert (down["c"], down["cp"]) == (-0.00655, -5.0385)


def test_day_statistics_travel_in_protocol_order() -> None:
    q = Quote(
        "AAPL", 228.61, 1, volume=3794800, prev_close=228.5, open=227.9, high=229.0, low=227.5, vwap=228.2
    )
    assert encode_entry(q, 3) == (
        b'{"s":"AAPL","p":228.61,"v":3794800,"c":0.11,"cp":0.0481,'
        b'"o":227.9,"h":229.0,"l":227.5,"pc":228.5,"vw":228.2,"t":1,"q":3}'
    )
    back = decode_entry(loads(encode_entry(q, 3)))
    assert (back.open, back.high, back.low, back.prev_close, back.vwap) == (227.9, 229.0, 227.5, 228.5, 228.2)
    assert back == Quote(
        "AAPL", 228.61, 1, None, None, 3794800, 0.11, 0.0481, 228.5, 3, 227.9, 229.0, 227.5, 228.2
    )
    assert back.to_wire() == loads(encode_entry(q, 3))
    only_high = Quote("X", 1.0, 1, high=2.0)  # each is optional on its own
    assert loads(encode_entry(only_high)) == {"s": "X", "p": 1.0, "h": 2.0, "t": 1}


def test_an_entry_from_before_the_day_statistics_still_decodes() -> None:
    old = decode_entry(Q)
    assert (old.open, old.high, old.low, old.prev_close, old.vwap) == (None,) * 5
    assert old.to_wire() == Q  # and encodes as it came


def test_hub_form_round_trips_through_the_decoder() -> None:
    q = Quote(
        "BRK.B", 462.8, 1, bid=462.79, ask=462.81, volume=1200, change=2.8, change_percent=0.6087, seq=9
    )
    back = decode_entry(loads(encode_entry(q, q.seq)))
    assert back == q and hash(back) == hash(q)


# -- the client's decode (ticker.client yields these) -------------------------------------------
def test_client_decode_round_trips() -> None:
    quote = decode_entry(Q)
    assert (quote.symbol, quote.price, quote.bid, quote.ask, quote.seq) == ("AAPL", 228.61, 228.59, 228.63, 3)
    assert quote.volume == 3794800 and quote.change_percent == 0.0481
    assert type(quote.volume) is int  # numbers keep their JSON type
    assert quote.ts == datetime(2026, 11, 21, 21, 42, 56, 498000, tzinfo=UTC)
    assert quote.to_wire() == Q
    bare = decode_entry({"s": "X", "p": 1, "t": 5, "q": 1, "future": "ignored"})
    assert (
        bare.bid is None and bare.prev_close is None and bare.to_wire() == {"s": "X", "p": 1, "t": 5, "q": 1}
    )
    assert decode_entry({"s": "X", "p": 1, "b": None, "t": 5, "q": 1}).bid is None  # null is absent
    assert quote == decode_entry(Q) and len({quote, decode_entry(Q)}) == 1  # a value: equal ones hash alike


# -- Redis: no q (sequence numbers are per edge node) -------------------------------------------
def test_redis_form_round_trips_without_sequence() -> None:
    q = Quote(
        "AAPL", 228.51, 1717171717165, bid=228.49, ask=228.53, volume=2507300, prev_close=228.5, open=227.0
    )
    enc = encode_entry(q)
    d = loads(enc)
    assert "q" not in d and d["t"] == 1717171717165 and d["c"] == 0.01
    assert (d["pc"], d["o"]) == (228.5, 227.0) and "h" not in d  # the day statistics travel to every edge
    back = decode_entry(d, sequenced=False)
    assert back.seq == 0 and back.prev_close == 228.5 and back.open == 227.0 and back.high is None
    assert encode_entry(back, 7) == encode_entry(
        q, 7
    )  # the same Q on every node, whatever the node's sequence


def test_redis_message_carries_publish_time_and_every_quote() -> None:
    a = Quote("MSFT", 415.3, 1000)
    b = Quote("MSFT", 415.4, 1050)
    msg = rc.encode_message([encode_entry(a), encode_entry(b)], 1717171717171.1234)
    pt, quotes = rc.decode_message(msg)
    assert pt == pytest.approx(1717171717171.123)
    assert [x.price for x in quotes] == [415.3, 415.4]
    assert quotes[0].bid is None


@pytest.mark.parametrize(
    "raw",
    [
        b"{nope",
        b"[]",
        b'{"q":[]}',
        b'{"pt":"x","q":[]}',
        b'{"pt":true,"q":[]}',
        b'{"pt":1}',
        b'{"pt":1,"q":{}}',
        b'{"pt":1,"q":[{"s":"A","t":1}]}',
        b'{"pt":1,"q":[{"s":"A","p":"1","t":1}]}',
        b'{"pt":1,"q":[{"s":"A","p":1,"t":1.5}]}',
        b'{"pt":1,"q":[{"s":"A","p":1,"t":1,"b":true}]}',
        b'{"pt":1,"q":[7]}',
    ],
)
def test_malformed_redis_messages_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        rc.decode_message(raw)


# -- recordings: no q, pc kept, r around it -----------------------------------------------------
def test_recording_form_round_trips_with_previous_close() -> None:
    q = Quote("BRK.B", 462.8, 1_763_000_000_000, bid=462.79, ask=462.81, volume=1200, prev_close=460.0)
    line = recording.encode(q, 1_763_000_000_005)
    assert line.startswith(b'{"r":1763000000005,"s":"BRK.B",') and line.endswith(
        b',"pc":460.0,"t":1763000000000}\n'
    )
    d = loads(line)
    assert "q" not in d and d["c"] == pytest.approx(2.8)
    r, back = recording.decode(line)
    assert r == 1_763_000_000_005 and back.prev_close == 460.0
    assert encode_entry(back, 1) == encode_entry(q, 1)
    r2, no_r = recording.decode(encode_entry(q))  # r defaults to t
    assert r2 == q.ts_ms and no_r.prev_close == 460.0
    day = Quote(
        "BRK.B", 462.8, 1_763_000_000_000, prev_close=460.0, open=461.0, high=463.0, low=460.5, vwap=462.0
    )
    r3, back_day = recording.decode(recording.encode(day, 1_763_000_000_005))
    assert r3 == 1_763_000_000_005 and encode_entry(back_day, 1) == encode_entry(day, 1)
    assert (back_day.open, back_day.high, back_day.low, back_day.vwap) == (461.0, 463.0, 460.5, 462.0)


def test_a_recording_line_from_before_the_day_statistics_still_loads() -> None:
    old = b'{"r":1763761200123,"s":"AAPL","p":228.51,"v":1200,"c":0.01,"cp":0.0044,"t":1763761200120,"pc":228.5}'
    r, q = recording.decode(old)
    assert r == 1763761200123 and q.prev_close == 228.5 and (q.open, q.high, q.low, q.vwap) == (None,) * 4


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (b'{"r":"x","s":"A","p":1,"t":1}', "'r'"),
        (b'{"r":1.5,"s":"A","p":1,"t":1}', "'r'"),
        (b'{"r":1,"s":"A","p":1,"t":1,"pc":"1"}', "'pc'"),
        (b'{"r":1,"s":"A","p":1,"t":1,"vw":"1"}', "'vw'"),
        (b'{"r":1,"s":"","p":1,"t":1}', "'s'"),
    ],
)
def test_malformed_recording_lines_name_the_field(line: bytes, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        recording.decode(line)


# -- every malformed entry ---------------------------------------------------------------------
GOOD: dict[str, Any] = {
    "s": "A",
    "p": 1.5,
    "b": 1,
    "a": 2,
    "v": 3,
    "c": 0.1,
    "cp": 0.2,
    "t": 5,
    "q": 1,
    "pc": 1.4,
    "o": 1.2,
    "h": 1.6,
    "l": 1.1,
    "vw": 1.45,
}


_DROP = object()
OPTIONAL = ("b", "a", "v", "c", "cp", "pc", "o", "h", "l", "vw")


def _with(**changes: Any) -> dict[str, Any]:
    d = dict(GOOD)
    for k, v in changes.items():
        if v is _DROP:
            del d[k]
        else:
            d[k] = v
    return d


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ([], None),
        ("AAPL", None),
        (None, None),
        (_with(s=_DROP), "s"),
        (_with(s=""), "s"),
        (_with(s=7), "s"),
        (_with(p=_DROP), "p"),
        (_with(p=None), "p"),
        (_with(p="1"), "p"),
        (_with(p=True), "p"),
        (_with(p=float("nan")), "p"),
        (_with(p=float("inf")), "p"),
        (_with(t=_DROP), "t"),
        (_with(t=1.5), "t"),
        (_with(t="5"), "t"),
        (_with(t=False), "t"),
        (_with(q=_DROP), "q"),
        (_with(q=0), "q"),
        (_with(q=1.0), "q"),
        (_with(q=True), "q"),
        *[(_with(**{k: "1"}), k) for k in OPTIONAL],
        *[(_with(**{k: False}), k) for k in OPTIONAL],
        *[(_with(**{k: [1]}), k) for k in OPTIONAL],
        *[(_with(**{k: float("-inf")}), k) for k in OPTIONAL],
        (_with(v=-1), "v"),  # a volume is never negative
    ],
)
def test_malformed_entries_are_refused_naming_the_field(entry: Any, field: str | None) -> None:
    with pytest.raises(MalformedQuote) as exc:
        decode_entry(entry)
    assert exc.value.field == field
    assert isinstance(exc.value, ValueError)
    if field is not None:
        assert repr(field) in str(exc.value)


def test_the_good_entry_is_accepted_and_q_is_only_read_when_sequenced() -> None:
    assert decode_entry(GOOD) == Quote("A", 1.5, 5, 1, 2, 3, 0.1, 0.2, 1.4, 1, 1.2, 1.6, 1.1, 1.45)
    assert decode_entry(_with(q="junk"), sequenced=False).seq == 0


@pytest.mark.parametrize(
    "text", [b'{"s":"A","p":NaN,"t":1}', b'{"s":"A","p":Infinity,"t":1}', b'{"s":"A","p":1e999,"t":1}']
)
def test_json_never_carries_non_finite_numbers(text: bytes) -> None:
    with pytest.raises(ValueError):
        recording.decode(text)


def test_kept_entries_hold_their_length_not_the_encoders_buffer() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = [
            encode_entry(Quote("AAPL", 100.0 + i, 1_700_000_000_000 + i, bid=99.0, ask=101.0), i + 1)
            for i in range(1000)
        ]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    held = sum(d.size_diff for d in after.compare_to(before, "filename"))
    assert len(kept) == 1000 and held < 200_000, held  # about 120 bytes each; orjson's buffers are 1-4 KiB


def test_every_combination_of_fields_encodes_in_the_entry_order_with_only_what_is_there() -> None:
    """The hub form's two paths (every field present: one dict display; else field by field) give the same bytes
    as the entry order of docs/protocol.md filled from what the quote has, for each of the 2**10 combinations."""
    values: dict[str, Any] = {
        "bid": 99.5,
        "ask": 100.5,
        "volume": 1200,
        "change": 0.25,
        "change_percent": 0.5,
    }
    values |= {"open": 99.0, "high": 101.0, "low": 98.5, "prev_close": 99.75, "vwap": 100.1}
    wire = {"bid": "b", "ask": "a", "volume": "v", "change": "c", "change_percent": "cp"}
    wire |= {"open": "o", "high": "h", "low": "l", "prev_close": "pc", "vwap": "vw"}
    order = ("s", "p", "b", "a", "v", "c", "cp", "o", "h", "l", "pc", "vw", "t", "q")
    names = list(values)
    for mask in range(1 << len(names)):
        given = {n: values[n] for i, n in enumerate(names) if mask >> i & 1}
        q = Quote("MSFT", 100.0, 1_700_000_000_000, **given)
        fields: dict[str, Any] = {"s": "MSFT", "p": 100.0, "t": 1_700_000_000_000, "q": 7}
        fields |= {wire[n]: v for n, v in given.items()}
        if "prev_close" in given:  # derived where the feed left them out: (100 - 99.75) and its percent
            fields.setdefault("c", 0.25)
            fields.setdefault("cp", 0.2506)
        expected = orjson.dumps({k: fields[k] for k in order if k in fields})
        assert encode_entry(q, 7) == expected, given
        assert encode_entry(q) == orjson.dumps({k: fields[k] for k in order if k in fields and k != "q"})
