"""The client's pure parts: server errors and the bounded, conflating quote buffer (quote parsing: test_quote_codec.py)."""

from __future__ import annotations

from ticker.client import Quote
from ticker.client.models import (
    InvalidSymbolError,
    QuoteBuffer,
    RateLimitedError,
    ServerError,
    TooManySymbolsError,
    server_error,
)


def q(sym: str, seq: int) -> Quote:
    return Quote(sym, 1.0, 0, seq=seq)


def test_server_errors_map_to_classes():
    assert isinstance(server_error("invalid_symbol", "m"), InvalidSymbolError)
    assert isinstance(server_error("too_many_symbols", "m"), TooManySymbolsError)
    assert isinstance(server_error("rate_limited", "m"), RateLimitedError)
    other = server_error("bad_json", "oops")
    assert type(other) is ServerError and other.code == "bad_json" and str(other) == "bad_json: oops"


def test_buffer_keeps_order_below_the_limit():
    buf = QuoteBuffer(limit=10)
    for i in range(1, 6):
        buf.push(q("A", i))
    assert [buf.pop().seq for _ in range(5)] == [1, 2, 3, 4, 5]  # type: ignore[union-attr]
    assert buf.pop() is None and buf.conflated == 0


def test_buffer_conflates_per_symbol_past_the_limit_and_stays_bounded():
    buf = QuoteBuffer(limit=4)
    for i in range(1, 10_001):
        buf.push(q("A" if i % 2 else "B", i))
    assert len(buf) == 4 + 2  # the limit plus one latest value per symbol
    assert buf.conflated == 10_000 - 6
    out = [buf.pop() for _ in range(6)]
    assert [x.seq for x in out] == [1, 2, 3, 4, 9_999, 10_000]  # type: ignore[union-attr]
    assert buf.pop() is None
    buf.push(q("A", 10_001))  # back to plain queuing once drained
    assert len(buf) == 1 and buf.pop().seq == 10_001  # type: ignore[union-attr]


def test_buffer_discard_drops_a_symbol_everywhere():
    buf = QuoteBuffer(limit=2)
    for i, sym in enumerate(["A", "B", "A", "C", "B"], 1):
        buf.push(q(sym, i))
    buf.discard(["A"])
    assert [(x.symbol, x.seq) for x in iter(buf.pop, None)] == [("B", 2), ("C", 4), ("B", 5)]


def test_subscriptions_apply_dedupes_by_q_until_a_new_connection():
    from ticker.client.link import Subscriptions

    subs = Subscriptions(["AAPL", "MSFT"], buffer_limit=100)
    e = lambda s, seq: {"s": s, "p": float(seq), "t": seq, "q": seq}  # noqa: E731
    subs.apply([e("AAPL", 5), e("MSFT", 2), e("NVDA", 9)])  # NVDA is not followed
    subs.apply([e("AAPL", 5), e("AAPL", 4), e("AAPL", 6), {"s": "AAPL"}])  # repeat, older, newer, malformed
    assert [(x.symbol, x.seq) for x in iter(subs.buffer.pop, None)] == [("AAPL", 5), ("MSFT", 2), ("AAPL", 6)]
    assert subs.data.is_set() and subs.latest["AAPL"].seq == 6
    subs.new_connection()  # another server process: its snapshot wins whatever its q
    subs.apply([e("AAPL", 1)])
    assert subs.latest["AAPL"].seq == 1 and subs.buffer.pop().seq == 1  # type: ignore[union-attr]
    subs.apply([e("AAPL", 1)])
    assert subs.buffer.pop() is None
    subs.forget(["AAPL"])
    subs.apply([e("AAPL", 2)])
    assert "AAPL" not in subs.latest and subs.buffer.pop() is None
