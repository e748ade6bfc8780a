"""Bar subscriptions (pure): who receives the live bars of which symbol and interval, and their payloads.

A subscription is a (symbol, interval) pair of one connection, carried under a *key*: the symbol for a
real-time user, its :func:`~ticker.delay.delayed_key` for a delayed one. It is *held* from the moment
the session accepts it (it counts against the cap and makes its symbol demanded, so the feeds produce
it) and *live* once the transport has sent its history (``bars``); only live subscribers get ``bar``
messages. At most ``max_per_connection`` subscriptions per connection. :meth:`BarHub.opening` builds a
subscription's ``bars``; :meth:`BarHub.reopen` builds them again for the live subscribers of a symbol whose
history arrived after their first one.

:meth:`BarHub.flush` reads what moved in a :class:`~ticker.barbook.BarBook` since the last flush and
builds, per (key, interval) that changed, **one** ``bar`` payload shared by all its subscribers: the
current bar for a trade, each applied bar for a provider's bar or correction (normally just one). A
delayed key gets no partial bar: when the timer (:attr:`BarHub.delayed_due`, set about once a second)
has run, each delayed key is sent the bars that ended by the horizon (now minus ``delay``) since the
last one it was sent, oldest first (its first release: only the newest); a provider's correction of a
bar already released is sent again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, Protocol, TypeVar

from ticker import protocol
from ticker.bars import INTERVALS, Bar
from ticker.delay import delayed_key, is_delayed_key, symbol_of
from ticker.errors import TooManyBarSubscriptions

S = TypeVar("S", bound=Hashable)

#: (hub key, interval): a symbol's or a delayed symbol's series at one interval.
BarKey = tuple[str, str]
#: One ``bar`` payload, the subscribers that all get exactly these bytes, and the (key, interval, t) it is.
BarBatch = tuple[bytes, dict[S, None], BarKey, int]

#: Bars sent at most per key in one release of the delayed tier, or on a conflated connection's resume
#: (the newest ones: a longer gap is closed by the bars the client already has).
RELEASE_BATCH = 60


class BarSource(Protocol):
    """What the hub reads of a :class:`~ticker.barbook.BarBook`."""

    def take_changes(self) -> tuple[dict[str, None], dict[tuple[str, str], dict[int, None]]]: ...

    def current(self, symbol: str, interval: str) -> Bar | None: ...

    def bar_at(self, symbol: str, interval: str, t: int) -> Bar | None: ...

    def last(self, symbol: str, interval: str, n: int, before_end: int | None = None) -> list[Bar]: ...


class BarHold:
    """One held subscription: its hub key, the history it asked for, and whether it is live."""

    __slots__ = ("history", "key", "live")

    def __init__(self, key: str, history: int) -> None:
        self.key = key
        self.history = history
        self.live = False


class BarHub(Generic[S]):
    """Bar subscriptions of every connection of a node, and the batching of bar changes into payloads."""

    def __init__(
        self,
        max_per_connection: int = 10,
        delay: float = 0.0,
        on_demand: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        """``delay``: seconds a delayed key's bars must have ended ago (``--delay``); ``on_demand`` is told
        the demanded symbols whenever that set changes."""
        self.max_per_connection = max_per_connection
        self.delay_ms = int(delay * 1000)
        self.on_demand = on_demand
        self._subs: dict[S, dict[tuple[str, str], BarHold]] = {}
        #: Live subscribers per (key, interval).
        self.members: dict[BarKey, dict[S, None]] = {}
        #: Symbol → intervals with live real-time subscribers (the fan-out's "is a flush due" lookup).
        self.realtime: dict[str, dict[str, None]] = {}
        self._released: dict[BarKey, int] = {}  # delayed (key, interval) → start of the last bar released
        self._wanted: dict[str, int] = {}  # symbol → held subscriptions (any tier, live or not)
        #: Set by the timer: the next flush releases the bars that passed the delay horizon.
        self.delayed_due = False

    # -- subscriptions -----------------------------------------------------------------------
    def holds(self, sub: S) -> dict[tuple[str, str], BarHold]:
        """``sub``'s subscriptions, (symbol, interval) → hold (do not change it)."""
        return self._subs.get(sub, {})

    def hold(self, sub: S, symbol: str, interval: str, key: str, history: int) -> None:
        """Hold (symbol, interval) for ``sub`` under ``key``, not live (again, for a repeated subscribe) until
        :meth:`start`. Raises :class:`TooManyBarSubscriptions`, holding nothing, past the cap."""
        mine = self._subs.setdefault(sub, {})
        old = mine.get((symbol, interval))
        if old is None and len(mine) >= self.max_per_connection:
            if not mine:
                del self._subs[sub]
            raise TooManyBarSubscriptions(self.max_per_connection, len(mine) + 1)
        if old is not None:
            self._stop(sub, old, interval)
        else:
            self._want(symbol, 1)
        mine[symbol, interval] = BarHold(key, history)

    def start(self, sub: S, symbol: str, interval: str, key: str, since: int = -1) -> bool:
        """Make a held subscription live (its history was sent); False when it is no longer held under ``key``.

        ``since``: the start of the newest bar its history held, where a delayed key not live yet starts releasing.
        """
        h = self._subs.get(sub, {}).get((symbol, interval))
        if h is None or h.key != key:
            return False
        if not h.live:
            h.live = True
            bk = (key, interval)
            members = self.members.get(bk)
            if members is None:
                members = self.members[bk] = {}
                if is_delayed_key(key):
                    self._released[bk] = since
                else:
                    self.realtime.setdefault(key, {})[interval] = None
            members[sub] = None
        return True

    def drop(self, sub: S, symbol: str, interval: str) -> str | None:
        """End ``sub``'s subscription of (symbol, interval); the key it had, None if it had none."""
        mine = self._subs.get(sub)
        h = None if mine is None else mine.pop((symbol, interval), None)
        if h is None:
            return None
        assert mine is not None
        if not mine:
            del self._subs[sub]
        self._stop(sub, h, interval)
        self._want(symbol, -1)
        return h.key

    def holders(self, symbols: Iterable[str]) -> list[S]:
        """Subscribers holding a bar subscription of any of ``symbols`` (a walk over every subscriber: rare)."""
        wanted = set(symbols)
        if not wanted.intersection(self._wanted):
            return []
        return [sub for sub, mine in self._subs.items() if any(s in wanted for s, _ in mine)]

    def remove(self, sub: S) -> None:
        """Forget ``sub`` (its connection closed) and every subscription it had."""
        for symbol, interval in list(self._subs.get(sub, {})):
            self.drop(sub, symbol, interval)

    def _stop(self, sub: S, h: BarHold, interval: str) -> None:
        if not h.live:
            return
        h.live = False
        bk = (h.key, interval)
        members = self.members[bk]
        del members[sub]
        if not members:
            del self.members[bk]
            if is_delayed_key(h.key):
                del self._released[bk]
            else:
                ivs = self.realtime[h.key]
                del ivs[interval]
                if not ivs:
                    del self.realtime[h.key]

    def _want(self, symbol: str, n: int) -> None:
        count = self._wanted.get(symbol, 0) + n
        if count > 0:
            self._wanted[symbol] = count
            if count > 1 or n < 0:
                return
        else:
            del self._wanted[symbol]
        if self.on_demand is not None:
            self.on_demand(self.demand())

    def demand(self) -> frozenset[str]:
        """Symbols held by at least one bar subscription (either tier)."""
        return frozenset(self._wanted)

    @property
    def active(self) -> bool:
        """Whether a flush has anything to look at: a live subscription."""
        return bool(self.members)

    @property
    def has_delayed(self) -> bool:
        """Whether some delayed key is live (the release timer has work)."""
        return bool(self._released)

    # -- payloads ----------------------------------------------------------------------------
    def horizon(self, wall_ms: int) -> int:
        """The instant by which a delayed bar must have ended (epoch ms)."""
        return wall_ms - self.delay_ms

    def flush(self, book: BarSource, wall_ms: int) -> list[BarBatch[S]]:
        """One payload per changed bar of a live (key, interval) since the last flush (see the module docstring)."""
        moved, applied = book.take_changes()
        out: list[BarBatch[S]] = []
        members = self.members
        if not members:
            self.delayed_due = False
            return out
        realtime = self.realtime
        for symbol in moved if len(moved) <= len(realtime) else [s for s in realtime if s in moved]:
            ivs = realtime.get(symbol)
            if ivs is not None:
                for iv in ivs:
                    bar = book.current(symbol, iv)
                    if bar is not None:
                        out.append((protocol.bar(symbol, iv, bar), members[symbol, iv], (symbol, iv), bar.t))
        released = self._released
        for (symbol, iv), starts in applied.items():
            rt = members.get((symbol, iv))
            if rt is not None:
                cur = book.current(symbol, iv) if symbol in moved else None
                for t in starts:
                    if cur is not None and cur.t == t:
                        continue  # sent above with the trade
                    bar = book.bar_at(symbol, iv, t)
                    if bar is not None:
                        out.append((protocol.bar(symbol, iv, bar), rt, (symbol, iv), bar.t))
            dk = (delayed_key(symbol), iv)
            last = released.get(dk)
            if last is not None:  # corrections of bars a delayed key was already sent
                for t in starts:
                    bar = book.bar_at(symbol, iv, t)
                    if bar is not None and bar.t <= last:
                        out.append((protocol.bar(symbol, iv, bar), members[dk], dk, bar.t))
        if self.delayed_due:
            self.delayed_due = False
            horizon = self.horizon(wall_ms)
            for dk, last in released.items():
                key, iv = dk
                symbol = symbol_of(key)
                newest = book.last(symbol, iv, 1, before_end=horizon)
                if not newest or newest[0].t <= last:
                    continue
                bars = newest if last < 0 else book.last(symbol, iv, RELEASE_BATCH, before_end=horizon)
                for bar in bars:
                    if bar.t > last:
                        out.append((protocol.bar(symbol, iv, bar), members[dk], dk, bar.t))
                released[dk] = newest[0].t
        return out

    def history(
        self, book: BarSource, symbol: str, interval: str, key: str, n: int, wall_ms: int
    ) -> list[Bar]:
        """The newest ``n`` bars a subscription under ``key`` may see now (a delayed one: ended by the horizon)."""
        if is_delayed_key(key):
            return book.last(symbol, interval, n, before_end=self.horizon(wall_ms))
        return book.last(symbol, interval, n)

    def newest(self, book: BarSource, symbol: str, interval: str, key: str, wall_ms: int) -> int:
        """The start of the newest bar a subscription under ``key`` may see now; -1 when there is none."""
        found = self.history(book, symbol, interval, key, 1, wall_ms)
        return found[-1].t if found else -1

    def opening(
        self, book: BarSource, symbol: str, interval: str, key: str, n: int, wall_ms: int
    ) -> tuple[bytes, int]:
        """A subscription's ``bars`` payload (its newest ``n`` bars it may see now) and the start of the newest
        bar it may see (-1: none), where it goes live from (:meth:`start`'s ``since``)."""
        bars = self.history(book, symbol, interval, key, n, wall_ms)
        since = bars[-1].t if bars else self.newest(book, symbol, interval, key, wall_ms)
        return protocol.bars(symbol, interval, bars, is_delayed_key(key)), since

    def reopen(self, book: BarSource, symbol: str, wall_ms: int) -> list[tuple[bytes, list[S]]]:
        """A fresh ``bars`` payload for the live subscribers of ``symbol`` (its history arrived after their
        first ``bars``), built as :meth:`opening` builds the first: one per (key, interval, history), with the
        subscribers that get it. Those that asked for no history get none (nothing new to say)."""
        out: list[tuple[bytes, list[S]]] = []
        for key in (symbol, delayed_key(symbol)):
            for iv in INTERVALS:
                members = self.members.get((key, iv))
                if not members:
                    continue
                by_n: dict[int, list[S]] = {}
                for sub in members:
                    n = self._subs[sub][symbol, iv].history
                    if n > 0:
                        by_n.setdefault(n, []).append(sub)
                for n, subs in by_n.items():
                    out.append((self.opening(book, symbol, iv, key, n, wall_ms)[0], subs))
        return out

    def catch_up(self, book: BarSource, sub: S, changed: dict[BarKey, int], wall_ms: int) -> list[bytes]:
        """``bar`` payloads for a connection that skipped flushes: per live (key, interval) of ``changed``
        (the oldest bar start it missed), the bars from that start on, at most :data:`RELEASE_BATCH`."""
        out: list[bytes] = []
        for (key, iv), since in changed.items():
            symbol = symbol_of(key)
            h = self._subs.get(sub, {}).get((symbol, iv))
            if h is None or not h.live or h.key != key:
                continue
            if is_delayed_key(key):
                last = self._released.get((key, iv), -1)
                bars = book.last(symbol, iv, RELEASE_BATCH, before_end=self.horizon(wall_ms))
                out.extend(protocol.bar(symbol, iv, b) for b in bars if since <= b.t <= last)
            else:
                out.extend(
                    protocol.bar(symbol, iv, b) for b in book.last(symbol, iv, RELEASE_BATCH) if b.t >= since
                )
        return out
