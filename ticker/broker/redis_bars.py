"""Bars through Redis: the publisher's bounded bar history and its live bar updates, for edge nodes.

The publisher aggregates (:mod:`ticker.broker.publisher_bars`); edge nodes only read. Layout (``P`` is
``--broker-prefix``):

- ``P:bars:SYMBOL:INTERVAL`` — sorted set: each member a bar's wire form ``{"t","o","h","l","c","v"}``
  (compact JSON), its score ``t``. One bar per ``t`` (a write removes the member of that score first), at
  most :data:`ticker.bars.HISTORY` bars (trimmed by rank, oldest out), all in one Lua call per series and
  write (:data:`WRITE_SERIES`), so a reader never sees a bar missing between its removal and its new value.
- ``P:bars:SYMBOL`` — string, the id of the publisher that wrote the symbol's whole history (after its
  backfill); an edge asked for history waits for it (at most :data:`LOAD_WAIT` s).
- Both expire :data:`BARS_TTL` s after the publisher last wrote or refreshed them (it refreshes its carried
  symbols every :data:`TTL_REFRESH` s), so a symbol nobody demands any more leaves Redis within the hour,
  while an edge or publisher restart (or a symbol demanded again soon) finds its history.
- ``P:b:SYMBOL`` — channel: ``{"pt":publish_ms,"s":SYMBOL,"b":{INTERVAL:[bar,...]},"r":true}`` at most once
  per :data:`FLUSH_EVERY` s per symbol: the bars of SYMBOL that changed since the last one, as they now stand,
  oldest first per interval; ``"r"`` (only when true) says the symbol's whole history was just (re)written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from ticker.bars import INTERVALS, Bar
from ticker.broker import redis_layout as rc
from ticker.symbols import valid_symbol

FLUSH_EVERY = 0.25  # seconds between two writes of the changed bars (one pipelined round trip each)
BARS_TTL = 3600  # seconds a symbol's history outlives its last write or refresh
TTL_REFRESH = 900.0  # seconds between two TTL refreshes of every carried symbol's history
LOAD_WAIT = 5.0  # seconds an edge waits for the publisher to write a symbol's history before answering

#: The Lua function writing one series (also run by the publisher's fenced writes, ticker/broker/redis_lease.py):
#: ``key`` the series, its ``bound``, the ``ttl``, ``replace`` the whole series (else merge), then the ``t, bar``
#: pairs in ``argv[first..last]``. Returns how many old bars the bound trimmed.
SERIES_FUNCTION = """
local function write_series(key, bound, ttl, replace, argv, first, last)
  if replace then redis.call('DEL', key) end
  for i = first, last, 2 do
    if not replace then redis.call('ZREMRANGEBYSCORE', key, argv[i], argv[i]) end
    redis.call('ZADD', key, argv[i], argv[i + 1])
  end
  local over = redis.call('ZCARD', key) - tonumber(bound)
  if over > 0 then redis.call('ZREMRANGEBYRANK', key, 0, over - 1) end
  if redis.call('EXISTS', key) == 1 then redis.call('EXPIRE', key, ttl) end
  return math.max(over, 0)
end
"""
#: One series' write, atomic: ``KEYS[1]`` the series; ``ARGV``: its bound, the TTL, ``1`` to replace the whole
#: series (else merge), then ``t, bar`` pairs. Returns how many old bars the bound trimmed.
WRITE_SERIES = (
    SERIES_FUNCTION + "return write_series(KEYS[1], ARGV[1], ARGV[2], ARGV[3] == '1', ARGV, 4, #ARGV)\n"
)
WRITE_SERIES_SHA = hashlib.sha1(WRITE_SERIES.encode()).hexdigest()


def write_args(bars: Iterable[Bar], maxlen: int, replace: bool, ttl: int = BARS_TTL) -> list[bytes | int]:
    """The ``ARGV`` of :data:`WRITE_SERIES` for ``bars`` (encoded now: bars are mutable)."""
    args: list[bytes | int] = [maxlen, ttl, 1 if replace else 0]
    for b in bars:
        args.append(b.t)
        args.append(b.encode())
    return args


def _number(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float)


def decode_bar(obj: object) -> Bar:
    """A bar from its wire form (a dict); raises ``ValueError`` when malformed."""
    if not isinstance(obj, dict):
        raise ValueError("malformed bar: not an object")
    t, o, h, lo, c, v = (obj.get(k) for k in ("t", "o", "h", "l", "c", "v"))
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise ValueError("malformed bar: bad t")
    if not (_number(o) and _number(h) and _number(lo) and _number(c)):
        raise ValueError("malformed bar: bad o, h, l or c")
    if not _number(v) or v < 0:  # type: ignore[operator]
        raise ValueError("malformed bar: bad v")
    if lo > h:  # type: ignore[operator]
        raise ValueError("malformed bar: l above h")
    return Bar(t, o, h, lo, c, v)  # type: ignore[arg-type]


def decode_history(members: Iterable[bytes | str]) -> tuple[list[Bar], int]:
    """(bars, how many members were malformed and skipped) of a series read from Redis."""
    bars: list[Bar] = []
    bad = 0
    for raw in members:
        try:
            bars.append(decode_bar(rc.json_object(raw, "bar")))
        except ValueError:
            bad += 1
    return bars, bad


@dataclass(frozen=True, slots=True)
class BarUpdate:
    """One message of ``P:b:SYMBOL``: the changed bars of one symbol by interval, oldest first."""

    pt: float
    symbol: str
    bars: dict[str, list[Bar]]
    ready: bool = False


def encode_update(
    symbol: str, bars: Mapping[str, Sequence[Bar]], publish_ms: float, ready: bool = False
) -> bytes:
    """A ``P:b:SYMBOL`` message (each bar encoded now)."""
    parts = [b'"' + i.encode() + b'":[' + b",".join(b.encode() for b in bs) + b"]" for i, bs in bars.items()]
    head = b'{"pt":' + repr(round(publish_ms, 3)).encode() + b',"s":"' + symbol.encode() + b'","b":{'
    return head + b",".join(parts) + (b'},"r":true}' if ready else b"}}")


def decode_update(data: bytes | str) -> BarUpdate:
    """A ``P:b:SYMBOL`` message; raises ``ValueError`` when malformed (any bad part: the whole message)."""
    msg = rc.json_object(data, "bar message")
    pt, symbol, by_interval, ready = msg.get("pt"), msg.get("s"), msg.get("b"), msg.get("r", False)
    if not _number(pt):
        raise ValueError("malformed bar message: bad pt")
    if not isinstance(symbol, str) or valid_symbol(symbol) != symbol:
        raise ValueError("malformed bar message: bad s")
    if not isinstance(by_interval, dict) or not isinstance(ready, bool):
        raise ValueError("malformed bar message: bad b or r")
    out: dict[str, list[Bar]] = {}
    for interval, bars in by_interval.items():
        if interval not in INTERVALS or not isinstance(bars, list):
            raise ValueError(f"malformed bar message: bad interval {str(interval)[:10]!r}")
        out[interval] = [decode_bar(b) for b in bars]
    return BarUpdate(float(pt), symbol, out, ready)  # type: ignore[arg-type]


async def read_history(
    client: Redis, layout: rc.Layout, symbol: str, interval: str, start_ms: int | None, end_ms: int | None
) -> tuple[bool, list[bytes]]:
    """(whether the publisher has written ``symbol``'s history, the members of its ``interval`` series starting
    in ``[start_ms, end_ms)``, oldest first; None: unbounded), in one ``MULTI``."""
    pipe = client.pipeline(transaction=True)
    pipe.exists(layout.bars_ready(symbol))
    pipe.zrangebyscore(
        layout.bars(symbol, interval),
        "-inf" if start_ms is None else start_ms,
        "+inf" if end_ms is None else f"({end_ms}",
    )
    ready, members = await pipe.execute()
    return bool(ready), list(members)
