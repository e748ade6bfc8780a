"""The Redis payload codec and URL checks (pure, no Redis needed)."""

from __future__ import annotations

import orjson
import pytest

from ticker.broker import redis_layout as rc
from ticker.quote import Quote


def test_quote_round_trips_without_sequence():
    q = Quote("AAPL", 228.51, 1717171717165, bid=228.49, ask=228.53, volume=2507300, prev_close=228.5)
    enc = rc.encode_quote(q)
    d = orjson.loads(enc)
    assert "q" not in d and d["t"] == 1717171717165 and d["c"] == 0.01
    back = rc.decode_quote(d)
    assert back.wire(7) == q.wire(7)  # the same Q on every node, whatever the node's sequence


def test_message_carries_publish_time_and_every_quote():
    a = Quote("MSFT", 415.3, 1000)
    b = Quote("MSFT", 415.4, 1050)
    msg = rc.encode_message([rc.encode_quote(a), rc.encode_quote(b)], 1717171717171.1234)
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
        b'{"pt":1,"q":[{"s":"A","t":1}]}',
        b'{"pt":1,"q":[{"s":"A","p":"1","t":1}]}',
        b'{"pt":1,"q":[{"s":"A","p":1,"t":1.5}]}',
        b'{"pt":1,"q":[{"s":"A","p":1,"t":1,"b":true}]}',
        b'{"pt":1,"q":[7]}',
    ],
)
def test_malformed_messages_are_refused(raw: bytes):
    with pytest.raises(ValueError):
        rc.decode_message(raw)


def test_layout_names():
    lay = rc.Layout("tk")
    assert lay.channel("BRK.B") == b"tk:q:BRK.B"
    assert lay.symbol_of(b"tk:q:BRK.B") == "BRK.B"
    assert lay.demand("n1") == "tk:demand:n1" and lay.last == "tk:last" and lay.ctl == b"tk:ctl"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("redis://127.0.0.1:6379/0", True),
        ("rediss://user:pw@cache.internal:6380/2", True),
        ("redis://h", True),
        ("http://h:6379", False),
        ("redis://:6379/0", False),
        ("redis://h:70000/0", False),
        ("redis://h:6379/zero", False),
    ],
)
def test_check_url(url: str, ok: bool):
    if ok:
        assert rc.check_url(url) == url
    else:
        with pytest.raises(ValueError):
            rc.check_url(url)


def test_redact_hides_the_password():
    assert rc.redact("redis://user:secret@h:1/0") == "redis://user:***@h:1/0"
    assert "secret" not in rc.redact("redis://:secret@h:1/0")
    assert rc.redact("redis://h:1/0") == "redis://h:1/0"
