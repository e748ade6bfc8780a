"""The delayed tier (pure): hub keys of delayed symbols, and the line that holds their updates back.

A delayed symbol is carried by the hub under its own key (``~AAPL``), so its subscribers share
groups and payloads exactly as real-time ones do; its entries still name the symbol itself.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from heapq import heappop, heappush, heapreplace
from math import ceil, floor, inf

from ticker.quote import Quote
from ticker.views import base_of

_MARK = "~"  # never part of a valid symbol (ticker.symbols.SYMBOL_RE)


def delayed_key(symbol: str) -> str:
    """The hub key of ``symbol``'s delayed stream."""
    return _MARK + symbol


def is_delayed_key(key: str) -> bool:
    """Whether ``key`` is a delayed stream's hub key."""
    return key[:1] == _MARK


def symbol_of(key: str) -> str:
    """The symbol a hub key carries (a view key's too: :mod:`ticker.views`)."""
    key = base_of(key)
    return key[1:] if key[:1] == _MARK else key


def split_keys(keys: Iterable[str]) -> tuple[set[str], set[str]]:
    """(real-time symbols, delayed symbols) of a set of hub keys."""
    rt: set[str] = set()
    dl: set[str] = set()
    for k in keys:
        k = base_of(k)
        if k[:1] == _MARK:
            dl.add(k[1:])
        else:
            rt.add(k)
    return rt, dl


class _Held:
    """One symbol's held entries, oldest first. The newest is open: its release time, ``q`` and bytes (the
    hub's own object) are attributes, so that coalescing just replaces them. The older ones are sealed:
    from ``head`` on, release times, ``q`` and lengths side by side in arrays, and copies of their
    bytes back to back in ``data`` (see :class:`DelayLine`)."""

    __slots__ = ("data", "head", "lens", "seqs", "tail", "tail_at", "tail_seq", "times")

    def __init__(self) -> None:
        self.times = array("d")
        self.seqs = array("q")
        self.lens = array("I")
        self.data = bytearray()  # the sealed entries not released: a release deletes its bytes from the front
        self.head = 0
        self.tail: bytes | None = None  # None: holds nothing
        self.tail_at = inf
        self.tail_seq = 0

    def first(self) -> float:
        """The release time of the oldest entry held."""
        return self.times[self.head] if self.head < len(self.times) else self.tail_at

    def seal(self, tail: bytes) -> None:
        """Move the open entry (``tail``) to the arrays."""
        self.times.append(self.tail_at)
        self.seqs.append(self.tail_seq)
        self.lens.append(len(tail))
        self.data += tail

    def compact(self) -> None:
        """Drop the released prefix of the arrays once it is an eighth of them (O(1) amortized per release)."""
        h = self.head
        if h >= 16 and h * 8 >= len(self.times):
            del self.times[:h], self.seqs[:h], self.lens[:h]
            self.head = 0

    def clear(self) -> None:
        """Hold nothing (and free the arrays' memory)."""
        del self.times[:], self.seqs[:], self.lens[:], self.data[:]
        self.head = 0
        self.tail = None


class DelayLine:
    """Holds the updates of the symbols someone receives delayed until each is ``delay`` old (pure).

    Every time is passed in (``now`` monotonic, ``wall`` epoch seconds). An update recorded at
    ``now`` is released unchanged at ``now + delay``, later if its ``t`` is ahead of ``wall`` (never
    before ``delay`` after its own ``t``). Release times of a symbol never decrease, so its entries
    leave in ``seq`` order. One entry per symbol per second of release time: a newer update in the
    same second replaces the last entry and takes its later release time (never released early).

    An entry is its release time, its ``q`` and a copy of the hub's encoded Q entry of the update,
    stored back to back with the symbol's other entries: about 20 bytes beside the entry's JSON,
    ~145 bytes in all for a quote with bid, ask and volume (``python -m bench.delay_memory``). Only
    a symbol's newest entry is the hub's bytes object itself (the same object as the hub's last
    value while the symbol is recorded), copied when a newer second starts: orjson's output keeps
    a 4 KiB allocation whatever its length, so it is never kept beyond that one per symbol.

    Memory bound: at most ``ceil(delay) + 1`` entries per symbol (past that, under a skewed clock or
    a stalled timer, the last entry is replaced), and only kept symbols (or those whose keep ended
    less than the hold time ago) hold any: entries <= sum over recorded symbols of ``ceil(delay) + 1``,
    whatever the tick rate. The heaps hold one item per symbol holding entries and per kept symbol;
    :meth:`prune`, called every second or so, ends keeps whose deadline passed even without traffic.
    """

    __slots__ = ("_cap", "_deadlines", "_heap", "_held", "_lines", "_pinned", "_timed", "delay", "recording")

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.recording: dict[str, float] = {}  # symbol -> keep deadline (monotonic; inf: until told)
        self._cap = ceil(delay) + 1
        self._lines: dict[str, _Held] = {}
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

    def record(self, quote: Quote, encoded: bytes, seq: int, now: float, wall: float) -> float:
        """Hold update ``seq`` of a recorded symbol, received at ``now`` (monotonic) / ``wall`` (epoch),
        as ``encoded`` (the hub's entry of it); return its release time (``inf``: not held)."""
        sym = quote.symbol
        if now >= self.recording.get(sym, -inf):
            self._stop(sym)
            return inf
        release = now + self.delay + max(0.0, quote.ts_ms / 1000.0 - wall)
        held = self._lines.get(sym)
        if held is None:
            held = self._lines[sym] = _Held()
        tail = held.tail
        if tail is not None:
            last = held.tail_at
            if release < last:
                release = last
            if release < floor(last) + 1 or len(held.times) - held.head + 1 >= self._cap:
                held.tail_at = release
                held.tail_seq = seq
                held.tail = encoded
                return release
            held.seal(tail)
        else:
            heappush(self._heap, (release, sym))
        held.tail_at = release
        held.tail_seq = seq
        held.tail = encoded
        self._held += 1
        return release

    def due(self, now: float) -> list[tuple[str, bytes, int]]:
        """Take what is due at ``now``: (symbol, encoded entry, ``q``) of each symbol's latest due entry
        (older due ones are dropped)."""
        self._expire(now)
        out: list[tuple[str, bytes, int]] = []
        heap, lines = self._heap, self._lines
        while heap and heap[0][0] <= now:
            sym = heap[0][1]
            held = lines[sym]
            first = held.first()
            if first > now:  # its oldest entry was replaced with a later release time
                heapreplace(heap, (first, sym))
                continue
            times, i = held.times, held.head
            end = len(times)
            if held.tail_at <= now:  # all of it
                assert held.tail is not None
                out.append((sym, bytes(memoryview(held.tail)), held.tail_seq))  # a compact copy
                self._held -= end - i + 1
                heappop(heap)
                if sym in self.recording:
                    held.clear()
                else:
                    del lines[sym]
                continue
            j = i + 1
            while j < end and times[j] <= now:  # the open entry is not due
                j += 1
            lens, data = held.lens, held.data
            start = sum(lens[i : j - 1])  # of the last due entry, in data
            stop = start + lens[j - 1]
            out.append((sym, bytes(data[start:stop]), held.seqs[j - 1]))
            del data[:stop]  # cheap: a bytearray drops its front by moving its start
            self._held -= j - i
            held.head = j
            held.compact()
            heapreplace(heap, (held.first(), sym))
        return out

    def next_due(self) -> float | None:
        """When the next entry is due (monotonic), None when nothing is held."""
        heap = self._heap
        while heap:
            at, sym = heap[0]
            head = self._lines[sym].first()
            if head == at:
                return at
            heapreplace(heap, (head, sym))
        return None

    def held(self) -> int:
        """Entries held now."""
        return self._held

    def drop_held(self) -> int:
        """Drop every entry held, keeping what is recorded (the source that numbered them is no longer the one:
        released later, they would go out under the new epoch); return how many went."""
        n = self._held
        self._lines.clear()
        self._heap.clear()
        self._held = 0
        return n

    def prune(self, now: float) -> None:
        """End the keeps whose deadline is past ``now``, forgetting symbols that hold nothing (the node
        calls this every second: :meth:`due` does it too, but runs only while entries are held)."""
        self._expire(now)

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
        held = self._lines.get(sym)
        if held is not None and held.tail is None:
            del self._lines[sym]
