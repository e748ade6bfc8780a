"""The relay between the ``--workers`` feed process and its workers: frames and messages (pure, no I/O).

A frame is a 4-byte big-endian length and that many bytes of one JSON object (orjson), at most
:data:`MAX_FRAME` bytes. Every message has a type ``"t"``:

feed process → worker

- ``hello`` ``{"t":"hello","v":1,"epoch":E,"feeds":[name,...]}``: first on every link; ``E`` names this
  feed process (the snapshots' ``e``), the feeds are its ``--feed`` names in order;
- ``q`` ``{"t":"q","f":i,"q":[Q,...]}``: quotes of feed ``i``, each a Q entry numbered at the source (``q``);
- ``c`` ``{"t":"c","q":[Q,...]}``: last values again (a joining worker's catch-up, or renumbered above a floor);
- ``bar`` ``{"t":"bar","f":i,"s":S,"i":interval,"b":[t,o,h,l,c,v],"x":final}``: a provider's own bar;
- ``err`` ``{"t":"err","f":i,"k":kind}`` and ``rc`` ``{"t":"rc","f":i}``: an upstream error kind, a reconnect;
- ``st`` ``{"t":"st","f":[{"up","age","reason","steady","limit","states"[,"known"]},...]}``: every feed's
  health and what it says of the symbols it carries, every second (``known`` when it changed);
- ``rep`` ``{"t":"rep","id":n,"ok":value}`` or ``{"t":"rep","id":n,"err":message,"ra":seconds|null}``.

worker → feed process

- ``join`` ``{"t":"join","w":index,"epoch":E|null,"floor":n}``: after ``hello``; the epoch it had and the
  highest ``q`` it delivered, so a new feed process numbers above it (:mod:`ticker.numbering`);
- ``d`` ``{"t":"d","s":[symbol,...]}``: the worker's whole demand;
- ``req`` ``{"t":"req","id":n,"f":i,"k":"ref"}`` or ``{"t":"req","id":n,"f":i,"k":"hist","a":[S,interval,start,end]}``.

:func:`decode` validates a frame's body into one of the message classes below, or raises :class:`RelayError`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ticker.bars import INTERVALS, Bar
from ticker.directory import SymbolInfo
from ticker.errors import CoreError, MalformedQuote
from ticker.protocol import EPOCH
from ticker.quote import Quote, decode_entry
from ticker.status import STATES, SymbolStatus

VERSION = 1
HEADER = 4  # bytes of a frame's length
MAX_FRAME = 32 << 20  # a provider's whole directory fits (tens of thousands of entries)
MAX_BATCH = 1_000  # Q entries per quote frame: a pass's quotes take as many frames as needed
MAX_ID = 1 << 53
REFERENCE = "ref"
HISTORY = "hist"


class RelayError(CoreError, ValueError):
    """A frame or message that breaks the relay's format; the message says what."""


# -- frames -----------------------------------------------------------------------------------
def frame(body: bytes) -> bytes:
    """``body`` with its length in front."""
    if len(body) > MAX_FRAME:
        raise RelayError(f"a frame of {len(body)} bytes is over the limit of {MAX_FRAME}")
    return len(body).to_bytes(HEADER, "big") + body


def frame_length(header: bytes) -> int:
    """The body length a frame's 4-byte ``header`` announces; :class:`RelayError` if 0 or over :data:`MAX_FRAME`."""
    if len(header) != HEADER:
        raise RelayError(f"a frame header is {HEADER} bytes, got {len(header)}")
    n = int.from_bytes(header, "big")
    if not 0 < n <= MAX_FRAME:
        raise RelayError(f"a frame of {n} bytes (1 to {MAX_FRAME} allowed)")
    return n


def _framed(obj: dict[str, Any]) -> bytes:
    return frame(orjson.dumps(obj))


# -- messages -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RelayHello:
    epoch: str
    feeds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RelayQuotes:
    """Quotes of feed ``feed`` (None: a catch-up of last values, counted for no feed)."""

    feed: int | None
    quotes: list[Quote]


@dataclass(frozen=True, slots=True)
class RelayBar:
    feed: int
    symbol: str
    interval: str
    bar: Bar
    final: bool


@dataclass(frozen=True, slots=True)
class RelayEvent:
    """An upstream error of ``kind`` (``kind`` None: a reconnect) of feed ``feed``."""

    feed: int
    kind: str | None


@dataclass(slots=True)
class RelayFeedState:
    """One feed as the feed process sees it: health, what it says of its symbols, its limit, its offer."""

    up: bool
    age: float | None  # seconds since its last data; None: none yet
    reason: str
    steady: bool
    limit: int | None
    states: dict[str, SymbolStatus]
    known: list[str] | None = None  # None: unchanged since the last report


@dataclass(frozen=True, slots=True)
class RelayStatus:
    feeds: list[RelayFeedState]


@dataclass(frozen=True, slots=True)
class RelayReply:
    id: int
    value: Any = None
    error: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class RelayJoin:
    worker: int
    epoch: str | None
    floor: int


@dataclass(frozen=True, slots=True)
class RelayDemand:
    symbols: frozenset[str]


@dataclass(frozen=True, slots=True)
class RelayRequest:
    id: int
    feed: int
    kind: str  # REFERENCE or HISTORY
    args: tuple[str, str, int, int] | None = None  # HISTORY: symbol, interval, start_ms, end_ms


RelayMessage = (
    RelayHello
    | RelayQuotes
    | RelayBar
    | RelayEvent
    | RelayStatus
    | RelayReply
    | RelayJoin
    | RelayDemand
    | RelayRequest
)


# -- encoders ---------------------------------------------------------------------------------
def hello(epoch: str, feeds: Sequence[str]) -> bytes:
    return _framed({"t": "hello", "v": VERSION, "epoch": epoch, "feeds": list(feeds)})


def quotes(feed: int | None, entries: Sequence[bytes]) -> list[bytes]:
    """Frames of encoded Q entries (each with its ``q``): of feed ``feed``, or a catch-up (None). The entries
    are joined as they are, not encoded again."""
    head = b'{"t":"c","q":[' if feed is None else b'{"t":"q","f":%d,"q":[' % feed
    return [
        frame(head + b",".join(entries[i : i + MAX_BATCH]) + b"]}") for i in range(0, len(entries), MAX_BATCH)
    ]


def bar(feed: int, symbol: str, interval: str, b: Bar, final: bool) -> bytes:
    return _framed(
        {"t": "bar", "f": feed, "s": symbol, "i": interval, "b": [b.t, b.o, b.h, b.l, b.c, b.v], "x": final}
    )


def error_event(feed: int, kind: str) -> bytes:
    return _framed({"t": "err", "f": feed, "k": kind})


def reconnect_event(feed: int) -> bytes:
    return _framed({"t": "rc", "f": feed})


def status(feeds: Sequence[RelayFeedState]) -> bytes:
    out = []
    for s in feeds:
        d: dict[str, Any] = {
            "up": s.up,
            "age": s.age,
            "reason": s.reason,
            "steady": s.steady,
            "limit": s.limit,
            "states": {sym: [st.state, st.reason] for sym, st in s.states.items()},
        }
        if s.known is not None:
            d["known"] = s.known
        out.append(d)
    return _framed({"t": "st", "f": out})


def reply(id: int, value: Any) -> bytes:
    return _framed({"t": "rep", "id": id, "ok": value})


def reply_error(id: int, message: str, retry_after: float | None = None) -> bytes:
    return _framed({"t": "rep", "id": id, "err": message, "ra": retry_after})


def join(worker: int, epoch: str | None, floor: int) -> bytes:
    return _framed({"t": "join", "w": worker, "epoch": epoch, "floor": floor})


def demand(symbols: Iterable[str]) -> bytes:
    return _framed({"t": "d", "s": sorted(symbols)})


def reference_request(id: int, feed: int) -> bytes:
    return _framed({"t": "req", "id": id, "f": feed, "k": REFERENCE})


def history_request(id: int, feed: int, symbol: str, interval: str, start_ms: int, end_ms: int) -> bytes:
    return _framed({"t": "req", "id": id, "f": feed, "k": HISTORY, "a": [symbol, interval, start_ms, end_ms]})


def encode_reference(entries: list[SymbolInfo] | None) -> Any:
    """A reply value: a feed's directory (None: it cannot tell)."""
    if entries is None:
        return None
    return [[e.symbol, e.name, e.exchange, e.type, e.currency] for e in entries]


def encode_bars(bars: list[Bar] | None) -> Any:
    """A reply value: history bars (None: no history at that interval)."""
    if bars is None:
        return None
    return [[b.t, b.o, b.h, b.l, b.c, b.v] for b in bars]


# -- decoders ---------------------------------------------------------------------------------
def _int(d: dict[str, Any], key: str, low: int = 0, high: int = MAX_ID) -> int:
    v = d.get(key)
    if type(v) is not int or not low <= v <= high:
        raise RelayError(f"{key!r}: expected an integer in [{low}, {high}], got {v!r:.40}")
    return v


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    if type(v) is not str:
        raise RelayError(f"{key!r}: expected a string, got {type(v).__name__}")
    return v


def _bool(d: dict[str, Any], key: str) -> bool:
    v = d.get(key)
    if type(v) is not bool:
        raise RelayError(f"{key!r}: expected true or false, got {type(v).__name__}")
    return v


def _list(d: dict[str, Any], key: str) -> list[Any]:
    v = d.get(key)
    if type(v) is not list:
        raise RelayError(f"{key!r}: expected a list, got {type(v).__name__}")
    return v


def _strings(items: list[Any], what: str) -> list[str]:
    if not all(type(s) is str and s for s in items):
        raise RelayError(f"{what}: expected non-empty strings")
    return items


def _number(v: Any, what: str) -> float:
    if type(v) not in (int, float) or not math.isfinite(v):
        raise RelayError(f"{what}: expected a finite number, got {v!r:.40}")
    number: float = v
    return number


def _bar(v: Any) -> Bar:
    if type(v) is not list or len(v) != 6 or type(v[0]) is not int:
        raise RelayError("a bar is [t, o, h, l, c, v] with an integer t")
    return Bar(v[0], *(_number(x, "a bar's value") for x in v[1:]))


def _quotes(d: dict[str, Any], feed: int | None) -> RelayQuotes:
    try:
        return RelayQuotes(feed, [decode_entry(e) for e in _list(d, "q")])
    except MalformedQuote as exc:
        raise RelayError(f"a quote: {exc}") from None


def _feed_state(d: Any) -> RelayFeedState:
    if type(d) is not dict:
        raise RelayError("a feed's state is an object")
    age = d.get("age")
    limit = d.get("limit")
    raw = d.get("states")
    if type(raw) is not dict:
        raise RelayError("'states': expected an object")
    states: dict[str, SymbolStatus] = {}
    for sym, st in raw.items():
        if type(st) is not list or len(st) != 2 or st[0] not in STATES or type(st[1]) is not str:
            raise RelayError(f"the state of {sym!r:.40}: expected [state, reason]")
        states[sym] = SymbolStatus(st[0], st[1])
    known = d.get("known")
    return RelayFeedState(
        up=_bool(d, "up"),
        age=None if age is None else max(0.0, _number(age, "'age'")),
        reason=_str(d, "reason"),
        steady=_bool(d, "steady"),
        limit=None if limit is None else _int(d, "limit"),
        states=states,
        known=None if known is None else _strings(_list(d, "known"), "'known'"),
    )


def _request(d: dict[str, Any]) -> RelayRequest:
    id, feed, kind = _int(d, "id"), _int(d, "f"), d.get("k")
    if kind == REFERENCE:
        return RelayRequest(id, feed, REFERENCE)
    if kind != HISTORY:
        raise RelayError(f"'k': unknown request {kind!r:.40}")
    a = _list(d, "a")
    if len(a) != 4 or type(a[0]) is not str or type(a[1]) is not str or a[1] not in INTERVALS:
        raise RelayError("'a': expected [symbol, interval, start_ms, end_ms]")
    if type(a[2]) is not int or type(a[3]) is not int:
        raise RelayError("'a': start_ms and end_ms are integers")
    return RelayRequest(id, feed, HISTORY, (a[0], a[1], a[2], a[3]))


def _reply(d: dict[str, Any]) -> RelayReply:
    id = _int(d, "id")
    if "err" in d:
        ra = d.get("ra")
        return RelayReply(id, None, _str(d, "err"), None if ra is None else max(0.0, _number(ra, "'ra'")))
    if "ok" not in d:
        raise RelayError("a reply has 'ok' or 'err'")
    return RelayReply(id, d["ok"])


def decode(body: bytes) -> RelayMessage:
    """The message of one frame's ``body``; :class:`RelayError` for anything but a well-formed message."""
    try:
        d = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RelayError(f"not JSON: {exc}") from None
    if type(d) is not dict:
        raise RelayError(f"expected an object, got {type(d).__name__}")
    t = d.get("t")
    if t == "q":
        return _quotes(d, _int(d, "f"))
    if t == "c":
        return _quotes(d, None)
    if t == "st":
        return RelayStatus([_feed_state(f) for f in _list(d, "f")])
    if t == "d":
        return RelayDemand(frozenset(_strings(_list(d, "s"), "'s'")))
    if t == "rep":
        return _reply(d)
    if t == "req":
        return _request(d)
    if t == "bar":
        interval = d.get("i")
        if type(interval) is not str or interval not in INTERVALS:
            raise RelayError(f"'i': unknown interval {interval!r:.20}")
        return RelayBar(_int(d, "f"), _str(d, "s"), interval, _bar(d.get("b")), _bool(d, "x"))
    if t == "err":
        return RelayEvent(_int(d, "f"), _str(d, "k"))
    if t == "rc":
        return RelayEvent(_int(d, "f"), None)
    if t == "join":
        epoch = d.get("epoch")
        if epoch is not None and type(epoch) is not str:
            raise RelayError("'epoch': expected a string or null")
        return RelayJoin(_int(d, "w"), epoch, _int(d, "floor"))
    if t == "hello":
        if d.get("v") != VERSION:
            raise RelayError(f"relay version {d.get('v')!r:.20}, expected {VERSION}")
        epoch = _str(d, "epoch")
        if EPOCH.fullmatch(epoch) is None:
            raise RelayError(f"'epoch': 1 to 64 of A-Z a-z 0-9 # : . _ -, got {epoch!r:.70}")
        return RelayHello(epoch, tuple(_strings(_list(d, "feeds"), "'feeds'")))
    raise RelayError(f"unknown message type {t!r:.40}")


def decode_reference(value: Any) -> list[SymbolInfo] | None:
    """A ``ref`` reply's value as directory entries (None: the feed cannot tell)."""
    if value is None:
        return None
    if type(value) is not list:
        raise RelayError("a directory is a list")
    out = []
    for row in value:
        if type(row) is not list or len(row) != 5 or not all(type(x) is str for x in row):
            raise RelayError("a directory entry is [symbol, name, exchange, type, currency]")
        out.append(SymbolInfo(*row))
    return out


def decode_bars(value: Any) -> list[Bar] | None:
    """A ``hist`` reply's value as bars (None: no history at that interval)."""
    if value is None:
        return None
    if type(value) is not list:
        raise RelayError("history is a list of bars")
    return [_bar(b) for b in value]
