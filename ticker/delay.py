"""The delayed tier (pure): hub keys of delayed symbols.

A delayed symbol is carried by the hub under its own key (``~AAPL``), so its subscribers share
groups and payloads exactly as real-time ones do; its entries still name the symbol itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from heapq import heappop, heappush, heapreplace
from math import ceil, floor, inf

from ticker.quote import Quote

_MARK = "~"  # never part of a valid symbol (ticker.symbols.SYMBOL_RE)


def delayed_key(symbol: str) -> str:
    """The hub key of ``symbol``'s delayed stream."""
    return _MARK + symbol


def is_delayed_key(key: str) -> bool:
    """Whether ``key`` is a delayed stream's hub key."""
    return key[:1] == _MARK


def symbol_of(key: str) -> str:
    """The symbol a hub key carries."""
    return key[1:] if key[:1] == _MARK else key


def split_keys(keys: Iterable[str]) -> tuple[set[str], set[str]]:
    """(real-time symbols, delayed symbols) of a set of hub keys."""
    rt: set[str] = set()
    dl: set[str] = set()
    for k in keys:
        if k[:1] == _MARK:
            dl.add(k[1:])
        else:
            rt.add(k)
    return rt, dl


_Entry = tuple[float, Quote, int]  # (release time, quote, seq)


class DelayLine:
    """Holds the updates of the symbols someone receives delayed until each is ``delay`` old (pure).

    Every time is passed in (``now`` monotonic, ``wall`` epoch seconds). An update recorded at
    ``now`` is released unchanged at ``now + delay``, later if its ``t`` is ahead of ``wall`` (never
    before ``delay`` after its own ``t``). Release times of a symbol never decrease, so its entries
    leave in ``seq`` order. One entry per symbol per second of release time: a newer update in the
    same second replaces the last entry and takes its later release time (never released early).
    Memory bound: at most ``ceil(delay) + 1`` entries per symbol (past that, under a skewed clock or
    a stalled timer, the last entry is replaced), and only kept symbols (or those whose keep ended
    less than the hold time ago) hold any: entries <= sum over recorded symbols of ``ceil(delay) + 1``,
    whatever the tick rate. The heaps hold one item per symbol holding entries and per kept symbol.
    """

    __slots__ = ("_cap", "_deadlines", "_heap", "_held", "_lines", "_pinned", "_timed", "delay", "recording")

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.recording: dict[str, float] = {}  # symbol -> keep deadline (monotonic; inf: until told)
        self._cap = ceil(delay) + 1
        self._lines: dict[str, deque[_Entry]] = {}
        self._heap: list[tuple[float, str]] = []  # (time <= its symbol's head release time, symbol)
        self._pinned: dict[str, float] = {}  # kept with inf: the latest finite deadline asked meanwhile
        self._deadlines: list[tuple[float, str]] = []
        self._timed: set[str] = set()  # symbols with an item in _deadlines
        self._held = 0

    def keep(self, symbols: Iterable[str], until: float) -> None:
        """Record ``symbols`` until ``until`` at least (``inf``: until :meth:`stop_keeping`); never shortens."""
        rec, pinned = self.recording, self._pinned
        for sym in symbols:
            cur = rec.get(sym)
            if cur is None or until > cur:
                if until == inf:
                    pinned[sym] = -inf if cur is None else cur
                rec[sym] = until
            elif cur == inf != until and until > pinned[sym]:
                pinned[sym] = until
            self._time(sym)

    def stop_keeping(self, symbols: Iterable[str], until: float) -> None:
        """End an ``inf`` keep of ``symbols``: record them until ``until`` or a later finite keep."""
        rec = self.recording
        for sym in symbols:
            cur = rec.get(sym)
            if cur is not None:
                rec[sym] = max(until, self._pinned.pop(sym) if cur == inf else cur)
                self._time(sym)

    def record(self, quote: Quote, seq: int, now: float, wall: float) -> None:
        """Hold update ``seq`` of a recorded symbol, received at ``now`` (monotonic) / ``wall`` (epoch)."""
        sym = quote.symbol
        if now >= self.recording.get(sym, -inf):
            self._stop(sym)
            return
        release = now + self.delay + max(0.0, quote.ts_ms / 1000.0 - wall)
        line = self._lines.get(sym)
        if line is None:
            line = self._lines[sym] = deque()
        if line:
            last = line[-1][0]
            if release < last:
                release = last
            if release < floor(last) + 1 or len(line) >= self._cap:
                line[-1] = (release, quote, seq)
                return
        else:
            heappush(self._heap, (release, sym))
        line.append((release, quote, seq))
        self._held += 1

    def due(self, now: float) -> list[tuple[Quote, int]]:
        """Take what is due at ``now``: per symbol the latest due entry (older due ones are dropped)."""
        self._expire(now)
        out: list[tuple[Quote, int]] = []
        heap, lines = self._heap, self._lines
        while heap and heap[0][0] <= now:
            sym = heap[0][1]
            line = lines[sym]
            if line[0][0] > now:  # its head was replaced with a later release time
                heapreplace(heap, (line[0][0], sym))
                continue
            entry = line.popleft()
            n = 1
            while line and line[0][0] <= now:
                entry = line.popleft()
                n += 1
            self._held -= n
            out.append((entry[1], entry[2]))
            if line:
                heapreplace(heap, (line[0][0], sym))
            else:
                heappop(heap)
                if sym not in self.recording:
                    del lines[sym]
        return out

    def next_due(self) -> float | None:
        """When the next entry is due (monotonic), None when nothing is held."""
        heap = self._heap
        while heap:
            at, sym = heap[0]
            head = self._lines[sym][0][0]
            if head == at:
                return at
            heapreplace(heap, (head, sym))
        return None

    def held(self) -> int:
        """Entries held now."""
        return self._held

    def _time(self, sym: str) -> None:
        if sym not in self._timed and self.recording[sym] != inf:
            self._timed.add(sym)
            heappush(self._deadlines, (self.recording[sym], sym))

    def _expire(self, now: float) -> None:
        dl = self._deadlines
        while dl and dl[0][0] <= now:
            sym = dl[0][1]
            until = self.recording.get(sym, -inf)
            if until <= now:
                self._stop(sym)
            elif until != inf:
                heapreplace(dl, (until, sym))
                continue
            heappop(dl)
            self._timed.discard(sym)

    def _stop(self, sym: str) -> None:
        self.recording.pop(sym, None)
        self._pinned.pop(sym, None)
        if not self._lines.get(sym, True):
            del self._lines[sym]
