"""The client's bar subscriptions (no I/O): one symbol's OHLCV bars at one interval, upserted by ``t``.

A :class:`BarSubscription` keeps the series (:attr:`BarSubscription.bars`, oldest first) and hands the
bars that are new or changed to the user's loop, in the order they first arrived: the history of a
``bars`` message, then each ``bar`` update. A bar with the same ``t`` replaces the one held (and one still
waiting for the loop); an update identical to the bar held is not handed out again. A later ``bars`` (after
a reconnect, or when a token moves the symbol between tiers) is merged: the bars older than its first one
stay, the rest is its word, and the bars it made new or changed are handed out.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from ticker.bars import HISTORY, Bar
from ticker.client.models import TickerError

log = logging.getLogger("ticker.client")

BarKey = tuple[str, str]  # (symbol, interval)


def decode_bar(e: Any) -> Bar:
    """A :class:`Bar` of one ``{"t","o","h","l","c","v"}`` object; ``ValueError`` when malformed."""
    if not isinstance(e, dict):
        raise ValueError(f"expected a bar object, got {type(e).__name__}")
    values: list[Any] = [e.get("t"), e.get("o"), e.get("h"), e.get("l"), e.get("c"), e.get("v", 0)]
    t, o, h, lo, c, v = values
    if type(t) is not int or not all(_is_number(x) for x in (o, h, lo, c, v)):
        raise ValueError(f"expected a bar with an integer t and numbers o h l c v: {str(e)[:200]}")
    return Bar(t, o, h, lo, c, v)


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


class BarSubscription:
    """A bar subscription of a :class:`~ticker.client.TickerClient`: iterate it for :class:`Bar` objects.

    ``bars`` is the series as it stands (a fresh list; at most ``maxlen`` bars, the newest). Do not change
    the bars you get: the series holds the very objects. The iteration ends after :meth:`TickerClient.
    unsubscribe_bars` or the client's close, and raises ``error`` when the server ended the subscription.
    """

    def __init__(self, symbol: str, interval: str, history: int) -> None:
        self.symbol = symbol
        self.interval = interval
        self.history = history
        self.maxlen = max(history, HISTORY[interval])
        self.delayed = False  # the last ``bars`` said so: bars end at least ``--delay`` ago
        self.loads = 0  # ``bars`` messages applied: 1, then one per reconnect or tier move
        self.error: TickerError | None = None  # why the server ended it
        self._ts: list[int] = []
        self._bars: list[Bar] = []
        self._waiting: dict[int, Bar] = {}
        self._data = asyncio.Event()
        self._ended = False

    @property
    def key(self) -> BarKey:
        """``(symbol, interval)``."""
        return self.symbol, self.interval

    @property
    def bars(self) -> list[Bar]:
        """The series, oldest first."""
        return list(self._bars)

    @property
    def active(self) -> bool:
        """Whether the subscription goes on (False once unsubscribed, ended by the server, or closed)."""
        return not self._ended

    @property
    def pending(self) -> int:
        """Bars waiting for the loop (at most ``maxlen``: past that the oldest waiting ones are dropped)."""
        return len(self._waiting)

    def __aiter__(self) -> BarSubscription:
        return self

    async def __anext__(self) -> Bar:
        while True:
            waiting = self._waiting
            if waiting:
                return waiting.pop(next(iter(waiting)))
            if self._ended:
                if self.error is not None:
                    raise self.error
                raise StopAsyncIteration
            self._data.clear()
            await self._data.wait()

    def __repr__(self) -> str:
        state = "active" if self.active else "ended"
        return f"<BarSubscription {self.symbol} {self.interval} {state} bars={len(self._bars)}>"

    # -- fed by the connection ---------------------------------------------------------------
    def load(self, entries: Iterable[Any], delayed: bool) -> None:
        """Apply a ``bars`` message: keep the held bars older than its first one, take its bars for the rest."""
        if self._ended:
            return
        new = {b.t: b for b in _decode_all(entries)}
        self.delayed = delayed
        self.loads += 1
        if not new:
            self._ts, self._bars = [], []
            self._waiting.clear()
            return
        ts = sorted(new)
        keep = bisect_left(self._ts, ts[0])
        old = dict(zip(self._ts[keep:], self._bars[keep:], strict=True))
        self._ts = (self._ts[:keep] + ts)[-self.maxlen :]
        self._bars = self._bars[:keep] + [new[t] for t in ts]
        self._bars = self._bars[-self.maxlen :]
        held = set(self._ts)
        self._waiting = {t: b for t, b in self._waiting.items() if t in held and (t < ts[0] or t in new)}
        for t in ts:
            if t in held and old.get(t) != new[t]:
                self._push(new[t])
        if self._waiting:
            self._data.set()

    def update(self, entry: Any) -> None:
        """Apply a ``bar`` message's bar: upsert it by ``t``."""
        if self._ended:
            return
        try:
            bar = decode_bar(entry)
        except ValueError as exc:
            log.warning("ignoring %s", exc)
            return
        ts, bars, t = self._ts, self._bars, bar.t
        i = bisect_left(ts, t)
        if i < len(ts) and ts[i] == t:
            if bars[i] == bar:
                return  # a repeat of the bar held
            bars[i] = bar
        else:
            if len(ts) >= self.maxlen and i == 0:
                return  # older than a full series
            ts.insert(i, t)
            bars.insert(i, bar)
            if len(ts) > self.maxlen:
                del ts[0], bars[0]
        self._push(bar)
        self._data.set()

    def end(self, error: TickerError | None = None, discard: bool = False) -> None:
        """Stop: the iteration ends after the waiting bars (none with ``discard``), raising ``error`` if given."""
        if self._ended:
            return
        self._ended = True
        self.error = error
        if discard:
            self._waiting.clear()
        self._data.set()

    def _push(self, bar: Bar) -> None:
        waiting = self._waiting
        if bar.t in waiting:
            waiting[bar.t] = bar  # its place in line stays
            return
        waiting[bar.t] = bar
        if len(waiting) > self.maxlen:
            del waiting[next(iter(waiting))]


def _decode_all(entries: Iterable[Any]) -> list[Bar]:
    out: list[Bar] = []
    for e in entries:
        try:
            out.append(decode_bar(e))
        except ValueError as exc:
            log.warning("ignoring %s", exc)
    return out
