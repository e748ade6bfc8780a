"""The normalized quote and its one codec: the Q entry of the wire protocol (pure, no I/O).

A :class:`Quote` is what every feed adapter emits, what the hub caches and what the client
yields. Fields a provider does not supply stay ``None`` and are left out of the wire form.

The Q entry (docs/protocol.md) is ``{"s","p","b","a","v","c","cp","o","h","l","pc","vw","t","q"}``.
Its three uses differ only in whether ``q`` travels, so one encoder (:func:`encode_entry`) and one
decoder and validator (:func:`decode_entry`) serve them all:

- to clients (hub, client's ``to_wire``): with the sequence number ``q``;
- on Redis: with the ``q`` the publisher numbered (every edge node gives the same ``q`` to the same update;
  ``decode_entry(obj, sequenced="q" in obj)`` reads it, and an entry without one from an older publisher);
- in recordings: without ``q`` (the file adds its own ``r``).

Entries written before the day statistics (``o h l pc vw``) existed decode as they did: absent fields are ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from math import floor as _floor
from math import isfinite
from typing import Any

import orjson

from ticker.errors import MalformedQuote

_orjson_dumps = orjson.dumps


def compact_dumps(obj: Any) -> bytes:
    """``orjson.dumps`` as a right-sized copy, for JSON that is kept (a last value, a view's entry).

    orjson's result keeps the buffer it was written in (4 KiB with orjson 3.13, 1 KiB before, however short
    the JSON): 20,000 cached entries of 150 bytes would hold 80 MB. ``b"%s" % raw`` copies it into a bytes
    object of its own size (a third of the cost of ``memoryview(raw).tobytes()``).
    """
    return b"%s" % _orjson_dumps(obj)


_dumps = compact_dumps


@dataclass(slots=True, unsafe_hash=True)
class Quote:
    """One normalized market-data update for a symbol: a value, hashable, never changed once emitted.

    ``price`` is the last trade price (or the bid/ask mid-point while a feed has quotes but no
    trade yet); ``ts_ms`` is the feed's own timestamp in epoch milliseconds (``ts`` gives it as
    a datetime); ``prev_close`` (``pc``) lets the encoder derive change and change percent when
    the feed does not send them; ``seq`` is the per-symbol sequence number ``q``, given once at the
    source (the Redis publisher, the ``--workers`` feed process) or else by the hub as the update enters
    it, and on quotes a client received (0 until numbered). The day statistics
    ``open``, ``high``, ``low`` (``o``, ``h``, ``l``) and ``vwap`` (``vw``) are the session's, as
    the feed supplies them or as the server works them out (:mod:`ticker.daystats`).

    Not ``frozen``: a frozen dataclass takes twice as long to build, and feeds build one per update.
    The one change a quote sees after its feed emitted it: the day statistics the feed left out are
    filled in as it enters a node or the Redis publisher, before anything else holds it.
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
    open: float | None = None
    high: float | None = None
    low: float | None = None
    vwap: float | None = None

    @property
    def ts(self) -> datetime:
        """The feed timestamp as an aware UTC datetime."""
        return datetime.fromtimestamp(self.ts_ms / 1000.0, tz=UTC)

    def to_wire(self) -> dict[str, Any]:
        """The Q object as a client received it (short field names, absent fields left out, ``q`` = ``seq``)."""
        d: dict[str, Any] = orjson.loads(encode_entry(self, self.seq))
        return d


def encode_entry(quote: Quote, seq: int | None = None) -> bytes:
    """The Q entry of ``quote`` as JSON bytes, with ``q`` = ``seq`` unless ``seq`` is None.

    Change and change percent come from the feed, or are derived from the previous close. The
    hub encodes every update once with this: it is the hot path (one call, each field read once).
    """
    s, p, t, b, a, v = quote.symbol, quote.price, quote.ts_ms, quote.bid, quote.ask, quote.volume
    c, cp, pc = quote.change, quote.change_percent, quote.prev_close
    o, h, lo, vw = quote.open, quote.high, quote.low, quote.vwap
    if pc:  # rounded half up to 6 and 4 decimals (floor is a third of the cost of round)
        try:
            if c is None:
                c = _floor((p - pc) * 1e6 + 0.5) / 1e6
            if cp is None:
                cp = _floor(c / pc * 1e6 + 0.5) / 1e4
        except OverflowError:  # finite numbers whose change is past a float's range: left underived
            pass
    if not (
        b is None or a is None or v is None or c is None or cp is None or o is None or h is None or lo is None
    ) and not (pc is None or vw is None):  # every field (a trade with its day statistics): one dict display
        full = {
            "s": s,
            "p": p,
            "b": b,
            "a": a,
            "v": v,
            "c": c,
            "cp": cp,
            "o": o,
            "h": h,
            "l": lo,
            "pc": pc,
            "vw": vw,
            "t": t,
        }
        if seq is not None:
            full["q"] = seq
        return _dumps(full)
    d: dict[str, Any] = {"s": s, "p": p}
    if b is not None:
        d["b"] = b
    if a is not None:
        d["a"] = a
    if v is not None:
        d["v"] = v
    if c is not None:
        d["c"] = c
    if cp is not None:
        d["cp"] = cp
    if o is not None:
        d["o"] = o
    if h is not None:
        d["h"] = h
    if lo is not None:
        d["l"] = lo
    if pc is not None:
        d["pc"] = pc
    if vw is not None:
        d["vw"] = vw
    d["t"] = t
    if seq is not None:
        d["q"] = seq
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
    (Redis and recordings carry none). The optional fields (``b a v c cp o h l pc vw``) are read when
    present: an entry without the day statistics is as valid as ever. Unknown keys are ignored, and
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
    v = _number(obj, "v")
    if v is not None and v < 0:
        raise MalformedQuote("v", f"must not be negative, got {v}")
    return Quote(
        s,
        p,
        _integer(obj, "t"),
        _number(obj, "b"),
        _number(obj, "a"),
        v,
        _number(obj, "c"),
        _number(obj, "cp"),
        _number(obj, "pc"),
        seq,
        _number(obj, "o"),
        _number(obj, "h"),
        _number(obj, "l"),
        _number(obj, "vw"),
    )
