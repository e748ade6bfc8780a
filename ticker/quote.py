"""The normalized quote and its one codec: the Q entry of the wire protocol (pure, no I/O).

A :class:`Quote` is what every feed adapter emits, what the hub caches and what the client
yields. Fields a provider does not supply stay ``None`` and are left out of the wire form.

The Q entry (docs/protocol.md) is ``{"s","p","b","a","v","c","cp","t","q"}``. Its three uses
differ only in which optional keys travel, so one encoder (:func:`encode_entry`) and one
decoder and validator (:func:`decode_entry`) serve them all:

- to clients (hub, client's ``to_wire``): with the sequence number ``q``;
- on Redis: without ``q`` (sequence numbers are per edge node);
- in recordings: without ``q``, with the previous close ``pc`` (the file adds its own ``r``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from math import isfinite
from typing import Any

import orjson

from ticker.errors import MalformedQuote

_dumps = orjson.dumps


@dataclass(slots=True, unsafe_hash=True)
class Quote:
    """One normalized market-data update for a symbol: a value, hashable, never changed once emitted.

    ``price`` is the last trade price (or the bid/ask mid-point while a feed has quotes but no
    trade yet); ``ts_ms`` is the feed's own timestamp in epoch milliseconds (``ts`` gives it as
    a datetime); ``prev_close`` lets the encoder derive change and change percent when the feed
    does not send them; ``seq`` is the server's per-symbol sequence number on quotes a client
    received (0 elsewhere: the hub numbers updates as they enter it).

    Not ``frozen``: a frozen dataclass takes twice as long to build, and feeds build one per update.
    """

    symbol: str
    price: float
    ts_ms: int
    bid: float | None = None
    ask: float | None = None
    volume: float | None = None
    change: float | None = None
    change_percent: float | None = None
    prev_close: float | None = None
    seq: int = 0

    @property
    def ts(self) -> datetime:
        """The feed timestamp as an aware UTC datetime."""
        return datetime.fromtimestamp(self.ts_ms / 1000.0, tz=UTC)

    def to_wire(self) -> dict[str, Any]:
        """The Q object as a client received it (short field names, absent fields left out, ``q`` = ``seq``)."""
        d: dict[str, Any] = orjson.loads(encode_entry(self, self.seq))
        return d


def encode_entry(quote: Quote, seq: int | None = None, prev_close: bool = False) -> bytes:
    """The Q entry of ``quote`` as JSON bytes: with ``q`` = ``seq`` unless ``seq`` is None, with ``pc`` if asked.

    Change and change percent come from the feed, or are derived from the previous close. The
    hub encodes every update once with this: it is the hot path (one call, each field read once;
    ``prev_close`` is not keyword-only, which would keep CPython 3.11 from specializing the call).
    """
    s, p, t, b, a, v = quote.symbol, quote.price, quote.ts_ms, quote.bid, quote.ask, quote.volume
    c, cp, pc = quote.change, quote.change_percent, quote.prev_close
    d: dict[str, Any] = {"s": s, "p": p}
    if b is not None:
        d["b"] = b
    if a is not None:
        d["a"] = a
    if v is not None:
        d["v"] = v
    if pc:
        if c is None:
            c = round(p - pc, 6)
        if cp is None:
            cp = round(c / pc * 100.0, 4)
    if c is not None:
        d["c"] = c
    if cp is not None:
        d["cp"] = cp
    d["t"] = t
    if seq is not None:
        d["q"] = seq
    if prev_close and pc is not None:
        d["pc"] = pc
    return _dumps(d)


def _number(d: dict[str, Any], key: str) -> Any:
    """``d[key]`` if it is a finite number (bool is not one), None if absent or null."""
    v = d.get(key)
    if v is None:
        return None
    kind = type(v)
    if kind is float:
        if not isfinite(v):
            raise MalformedQuote(key, f"not a finite number: {v!r}")
    elif kind is not int:
        raise MalformedQuote(key, f"expected a number, got {kind.__name__}")
    return v


def _integer(d: dict[str, Any], key: str) -> int:
    v = d.get(key)
    if type(v) is not int:
        raise MalformedQuote(key, "missing" if v is None else f"expected an integer, got {type(v).__name__}")
    return v


def decode_entry(obj: Any, *, sequenced: bool = True) -> Quote:
    """Validate a decoded Q entry and build its :class:`Quote`; raise :class:`MalformedQuote` naming the field.

    ``sequenced``: ``q`` is required (an integer >= 1, kept as ``seq``); otherwise it is not read
    (Redis and recordings carry none). ``pc`` is read when present. Unknown keys are ignored, and
    numbers keep their JSON type (an integer volume stays an int).
    """
    if not isinstance(obj, dict):
        raise MalformedQuote(None, f"expected an object, got {type(obj).__name__}")
    s = obj.get("s")
    if type(s) is not str or not s:
        raise MalformedQuote("s", "missing" if s is None else "expected a non-empty string")
    p = _number(obj, "p")
    if p is None:
        raise MalformedQuote("p", "missing")
    seq = 0
    if sequenced:
        seq = _integer(obj, "q")
        if seq < 1:
            raise MalformedQuote("q", f"must be at least 1, got {seq}")
    return Quote(
        s,
        p,
        _integer(obj, "t"),
        _number(obj, "b"),
        _number(obj, "a"),
        _number(obj, "v"),
        _number(obj, "c"),
        _number(obj, "cp"),
        _number(obj, "pc"),
        seq,
    )
