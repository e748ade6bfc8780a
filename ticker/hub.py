"""The hub: subscriber sets, last-value cache and per-symbol sequence numbers (pure, no I/O).

Subscribers with the same set of symbols share a *group*, so one flush builds one payload
per group however many connections are in it. Each update is encoded once (``encode_entry``) when it
enters the hub; a flush joins the encoded entries of a group's changed symbols into one
``quotes`` payload, holding only the latest value per symbol.

A subscription with options (a maximum rate, selected fields, deltas: :mod:`ticker.views`) holds a *view
key* (``AAPL@500000//d``), a :class:`ViewState` hanging off its base key's state. An update of the base marks
its views due; a throttled view not yet allowed to send waits in one heap of timers (:attr:`Hub.wake_at` is
the earliest), and a flush renders each due view once, from the base's entry, for all its subscribers.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from heapq import heappop, heappush
from itertools import count
from math import inf
from typing import Any, Generic, TypeVar

from ticker import protocol
from ticker.delay import delayed_key, is_delayed_key, symbol_of
from ticker.errors import TooManySymbols
from ticker.quote import Quote, encode_entry
from ticker.tables import compact_all, compact_held
from ticker.views import ViewSpec, base_of, decode, render, spec_of

DemandListener = Callable[[frozenset[str]], None]
S = TypeVar("S", bound=Hashable)


class SymbolState:
    """What the hub holds for one hub key (a symbol, or a delayed symbol's :func:`~ticker.delay.delayed_key`);
    batches carry these for the updates they hold.

    ``seq`` starts at the hub's count of updates so far, not at 0: a symbol evicted from the idle
    cache and seen again later keeps going up from above any ``q`` it had before.
    """

    __slots__ = ("encoded", "groups", "pending_since", "quote", "seq", "symbol", "views")

    def __init__(self, symbol: str, seq: int) -> None:
        self.symbol = symbol
        self.seq = seq
        self.quote: Quote | None = None
        self.encoded: bytes | None = None
        self.groups: set[_Group] = set()
        self.pending_since: float | None = None
        self.views: tuple[ViewState, ...] = ()  # views of this key that someone holds (rarely changes)

    @property
    def entry(self) -> bytes | None:
        """The full entry of the last value, as a snapshot carries it."""
        return self.encoded


class ViewState(SymbolState):
    """A view key's state: ``encoded`` is the entry its last flush sent (a delta for a delta view), ``full`` the
    full entry of the same value; ``sent`` that value decoded, the base of the next delta; ``next_at`` the
    earliest monotonic time a throttled view may send again; ``waiting`` while it sits in the hub's timers."""

    __slots__ = ("base", "full", "interval", "next_at", "sent", "spec", "waiting")

    def __init__(self, key: str, base: SymbolState) -> None:
        super().__init__(key, base.seq)
        self.base = base
        self.spec: ViewSpec = spec_of(key)
        self.interval = self.spec.interval_us / 1e6
        self.next_at = -inf
        self.waiting = False
        self.sent: dict[str, Any] | None = None
        self.full: bytes | None = None
        if base.encoded is not None:
            self.encoded, self.full, self.sent = render(self.spec, decode(base.encoded), None)

    @property
    def entry(self) -> bytes | None:
        """A delta or throttled view's snapshot is what its subscribers last received: the base of its next
        delta, and an entry no closer than the interval to the next; an unthrottled view's is the symbol's
        latest value with the view's fields."""
        spec, base = self.spec, self.base
        if spec.delta or spec.interval_us or base.encoded is None:
            return self.full
        if spec.fields is None:
            return base.encoded
        return render(spec, decode(base.encoded), None)[1]


class _Group:
    __slots__ = ("key", "members", "pending")

    def __init__(self, key: frozenset[str]) -> None:
        self.key = key
        self.members: set[Any] = set()
        self.pending: list[SymbolState] | None = None  # symbols whose update is due at the next flush, if any


#: One payload of a flush, the subscribers that all get exactly these bytes, and the symbols in it.
#: A plain tuple: thousands are made per second.
Batch = tuple[bytes, set[S], list[SymbolState]]

_QUOTES_HEAD = b'{"type":"' + protocol.QUOTES + b'","data":['
_QUOTES_TAIL = b"]}"
#: Last values of keys nobody receives kept for the next subscriber's snapshot (about 2.6 KB each with their
#: day statistics): past it, those updated least recently are forgotten.
MAX_IDLE_SYMBOLS = 2_000
#: Seconds a last value nobody receives is kept once no update reaches it (:meth:`Hub.expire_idle`), as a
#: symbol's bars are (``ticker/server/history.py``, ``LINGER``).
IDLE_SECONDS = 30.0
#: Seconds between the node's looks for such values (and for tables a burst left sparse: :meth:`Hub.compact`).
IDLE_SWEEP_SECONDS = 5.0
_UNSEEN = -inf  # an idle key's time before expire_idle first saw it


def _no(symbol: str) -> bool:
    return False


@dataclass(slots=True)
class Flush(Generic[S]):
    """The result of :meth:`Hub.flush`: batches to write and the hub-entry times of the flushed updates."""

    batches: list[Batch[S]]
    pending_since: list[float]


class Hub(Generic[S]):
    """Subscriptions, last values and the batching of updates into payloads."""

    def __init__(
        self,
        max_symbols: int = 500,
        on_demand: DemandListener | None = None,
        max_idle_symbols: int = MAX_IDLE_SYMBOLS,
        on_forget: Callable[[str], None] | None = None,
    ) -> None:
        """``on_forget(key)``: told each key whose last value the idle cache dropped (its day statistics go too)."""
        self.max_symbols = max_symbols
        self.max_idle_symbols = max_idle_symbols
        self.on_demand = on_demand
        self.on_forget = on_forget
        #: Symbols whose last values the idle cache keeps whatever their age (a feed carries them whatever
        #: the demand, such as the simulated market's universe, even while its market is closed).
        self.keep: Callable[[str], bool] = _no
        self._symbols: dict[str, SymbolState] = {}
        self._groups: dict[frozenset[str], _Group] = {}
        self._subs: dict[S, frozenset[str]] = {}
        self._dirty: dict[str, SymbolState] = {}
        # keys nobody wants → when an update last reached them (_UNSEEN: let go, stamped by expire_idle),
        # least recently updated first (a bounded cache)
        self._idle: dict[str, float] = {}
        self._wanted: set[str] = set()  # symbols with at least one subscriber, kept up to date
        self._order: dict[S, tuple[str, ...]] = {}  # each subscriber's keys in the order it subscribed them
        self._dirty_views: list[ViewState] = []  # views due at the next flush (also in _dirty)
        self._timers: list[tuple[float, int, ViewState]] = []  # throttled views waiting for their time
        self._tick = count()
        #: The earliest time a throttled view waits for (inf: none): the fan-out flushes then.
        self.wake_at = inf
        self._view_count = 0  # views held now (the throttled count is 0 at once without any)
        #: Bumped by every change of any subscriber's set (the node's allotment is worked out again).
        self.changes = 0
        self.updates_in = 0
        #: Names the source that numbers ``q`` (a snapshot's ``e``): this process, the ``--workers`` feed
        #: process or the Redis publisher; set by the node (:func:`valid_epoch` text only).
        self.epoch = "0"

    # -- subscriptions -----------------------------------------------------------------------
    @property
    def connections(self) -> int:
        """Number of registered subscribers."""
        return len(self._subs)

    @property
    def subscription_count(self) -> int:
        """Sum over subscribers of their symbol counts."""
        return sum(len(g.key) * len(g.members) for g in self._groups.values())

    def demand(self) -> frozenset[str]:
        """Symbols with at least one subscriber."""
        return frozenset(self._wanted)

    @property
    def demand_count(self) -> int:
        """How many symbols have at least one subscriber."""
        return len(self._wanted)

    def add(self, sub: S) -> None:
        """Register a subscriber with no symbols."""
        self._subs.setdefault(sub, frozenset())

    def remove(self, sub: S) -> None:
        """Forget a subscriber and its subscriptions."""
        key = self._subs.pop(sub, None)
        self._order.pop(sub, None)
        if key:
            self._move(sub, key, frozenset())

    def members(self, key: str) -> list[S]:
        """The subscribers of hub key ``key`` (not the hot path: status pushes)."""
        st = self._symbols.get(key)
        if st is None:
            return []
        return [m for x in (st, *st.views) for g in x.groups for m in g.members]

    def symbols_of(self, sub: S) -> frozenset[str]:
        """The subscriber's current symbol set."""
        return self._subs.get(sub, frozenset())

    def in_order(self) -> Iterator[tuple[S, tuple[str, ...]]]:
        """Every subscriber, the first registered first, with its keys in the order it subscribed them."""
        order = self._order
        return ((sub, order.get(sub, ())) for sub in self._subs)

    def subscribe(
        self, sub: S, symbols: Iterable[str], replacing: Iterable[str] = (), now: float = -inf
    ) -> tuple[list[str], list[bytes]]:
        """Add ``symbols`` and drop the keys of ``replacing`` not among them, in one change (a symbol moving to
        another view key is never out of demand on the way); return (newly added symbols, encoded last values of
        those that have one). ``now`` (monotonic): a throttled view made now counts its snapshot as its first
        entry, so its next one waits for its interval.

        Raises :class:`TooManySymbols` (changing nothing) when the cap would be passed.
        """
        old = self._subs.get(sub, frozenset())
        wanted = dict.fromkeys(symbols)
        added = [s for s in wanted if s not in old]
        gone = [k for k in dict.fromkeys(replacing) if k in old and k not in wanted]
        if not added and not gone:
            return [], []
        new = old.difference(gone).union(added)
        if len(new) > self.max_symbols:
            raise TooManySymbols(self.max_symbols, len(new))
        self._subs[sub] = new
        self._order[sub] = tuple(s for s in self._order.get(sub, ()) if s in new) + tuple(added)
        self._move(sub, old, new, now)
        snap = [e for s in added if (e := self._symbols[s].entry) is not None]
        return added, snap

    def unsubscribe(self, sub: S, symbols: Iterable[str]) -> list[str]:
        """Remove ``symbols``; return the ones that were subscribed."""
        old = self._subs.get(sub, frozenset())
        gone = [s for s in dict.fromkeys(symbols) if s in old]
        if gone:
            new = old.difference(gone)
            self._subs[sub] = new
            self._order[sub] = tuple(s for s in self._order.get(sub, ()) if s in new)
            self._move(sub, old, new)
        return gone

    def _move(self, sub: S, old: frozenset[str], new: frozenset[str], now: float = -inf) -> None:
        self.changes += 1
        changed = False
        # The new set first: a key in both never loses its last group on the way (a view keeps its state).
        if new:
            g2 = self._groups.get(new)
            if g2 is None:
                g2 = self._groups[new] = _Group(new)
                for s in new:
                    st2 = self._symbols.get(s)
                    if st2 is None:
                        st2 = self._symbols[s] = self._new_state(s, now)
                    if not st2.groups:
                        changed = True
                        self._wanted.add(s)
                        self._idle.pop(s, None)
                    st2.groups.add(g2)
            g2.members.add(sub)
        if old:
            g = self._groups[old]
            g.members.discard(sub)
            if not g.members:
                del self._groups[old]
                for s in old:
                    st = self._symbols[s]
                    st.groups.discard(g)
                    if not st.groups:
                        changed = True
                        self._wanted.discard(s)
                        if isinstance(st, ViewState):
                            self._drop_view(st)
                        elif not st.views:
                            self._let_go(st)
        if changed:
            self._prune()
            if self.on_demand is not None:
                self.on_demand(self.demand())

    def _new_state(self, key: str, now: float) -> SymbolState:
        """A new state for ``key``: a view hangs off its base key's state (made if need be)."""
        base_key = base_of(key)
        if base_key == key:
            return SymbolState(key, self.updates_in)
        base = self._symbols.get(base_key)
        if base is None:
            base = self._symbols[base_key] = SymbolState(base_key, self.updates_in)
        self._idle.pop(base_key, None)  # a base with views is held, never evicted
        view = ViewState(key, base)
        self._view_count += 1
        if view.full is not None:  # its first entry is the snapshot its first subscriber gets now
            view.next_at = now + view.interval
        base.views = (*base.views, view)
        return view

    def _drop_view(self, view: ViewState) -> None:
        """Forget a view nobody holds any more (a timer it left in the heap finds it gone)."""
        del self._symbols[view.symbol]
        self._view_count -= 1
        base = view.base
        base.views = tuple(v for v in base.views if v is not view)
        view.waiting = False
        if view.pending_since is not None:
            view.pending_since = None
            self._dirty.pop(view.symbol, None)
        if not base.views and not base.groups:
            self._let_go(base)

    def _let_go(self, st: SymbolState) -> None:
        """``st`` has no subscribers left: keep its last value in the idle cache, or forget it if it has none."""
        if st.encoded is None:  # never had data: nothing worth keeping
            del self._symbols[st.symbol]
        else:
            self._idle[st.symbol] = _UNSEEN

    def forget_values(self) -> int:
        """Drop every last value, subscribed or not, delayed keys and views too, and the updates waiting for a
        flush: numbered by a source that is no longer the one, none may go out under the new epoch (a client
        would take its ``q`` as the new source's and drop that source's next updates). The subscriptions stay;
        each key holds nothing until its next update, and a view starts again from a full entry. Not on the
        hot path (an epoch change). Returns how many values went."""
        symbols = self._symbols
        forget = self.on_forget
        for s in self._idle:
            del symbols[s]
            if forget is not None:
                forget(s)
        n = len(self._idle)
        self._idle.clear()
        for st in symbols.values():
            if st.encoded is not None and type(st) is SymbolState:
                n += 1
            st.quote = st.encoded = None
            st.pending_since = None
            if isinstance(st, ViewState):
                st.full = st.sent = None
                st.waiting = False
                st.next_at = -inf
        self._dirty.clear()
        self._dirty_views = []
        self._timers = []
        self.wake_at = inf
        return n

    def _prune(self) -> None:
        # Keep last values of unwanted symbols for snapshots, but only the max_idle_symbols updated last; those
        # kept (self.keep) go to the back instead, at most once each per call.
        idle = self._idle
        forget = self.on_forget
        keep = self.keep
        for _ in range(len(idle)):
            if len(idle) <= self.max_idle_symbols:
                return
            s = next(iter(idle))
            at = idle.pop(s)
            if keep(symbol_of(s)):
                idle[s] = at
                continue
            del self._symbols[s]
            if forget is not None:
                forget(s)

    def compact(self) -> int:
        """Rebuild the tables a burst left sparse, the hub's and each group's members (:mod:`ticker.tables`);
        the bytes let go."""
        return compact_held(self) + compact_all(*[g.members for g in self._groups.values()])

    def expire_idle(self, now: float, after: float = IDLE_SECONDS) -> int:
        """Forget the last values nobody receives that no update reached for ``after`` seconds by monotonic
        ``now`` (:attr:`on_forget` is told each), except those of the symbols :attr:`keep` names; how many went.
        A key let go starts its time at the first call after. Not on the hot path: a look at each idle key,
        every few seconds."""
        idle = self._idle
        keep = self.keep
        gone = []
        for key, at in idle.items():
            if at == _UNSEEN:
                idle[key] = now
            elif now - at >= after and not keep(symbol_of(key)):
                gone.append(key)
        forget = self.on_forget
        for key in gone:
            del idle[key], self._symbols[key]
            if forget is not None:
                forget(key)
        return len(gone)

    # -- updates -----------------------------------------------------------------------------
    def publish(self, quote: Quote, now: float) -> bool:
        """Take one update entering the hub at monotonic time ``now``; return True if it is due for a flush."""
        st = self._symbols.get(quote.symbol)
        if st is None:
            st = self._symbols[quote.symbol] = SymbolState(quote.symbol, self.updates_in)
        seq = quote.seq  # > 0: numbered at the source (a publisher, the --workers feed process), kept as is
        st.seq = seq if seq else st.seq + 1
        self.updates_in += 1
        st.quote = quote
        st.encoded = encode_entry(quote, st.seq)
        # _take inlined: this runs once per update, the hot path's entry.
        if st.views:
            due = self._views_changed(st, now)
            if not st.groups:
                return due
        if not st.groups:
            idle = self._idle
            idle.pop(quote.symbol, None)  # nobody holds it: idle, the most recently updated (the last to go)
            idle[quote.symbol] = now
            if len(idle) > self.max_idle_symbols:
                self._prune()
            return False
        if st.pending_since is None:
            st.pending_since = now
            self._dirty[st.symbol] = st
        return True

    def publish_delayed(self, symbol: str, encoded: bytes, seq: int, now: float) -> bool:
        """Take an update the delay line releases, for ``symbol``'s delayed key: ``encoded`` is the entry
        the hub made of it (:attr:`SymbolState.encoded`, with the ``q`` = ``seq`` it had when it entered
        the hub). A delayed key keeps no :class:`Quote` (its ``quote`` is None). Return True if it is
        due for a flush."""
        key = delayed_key(symbol)
        st = self._symbols.get(key)
        if st is None:
            st = self._symbols[key] = SymbolState(key, seq)
        st.seq = seq
        st.quote = None
        st.encoded = encoded
        if st.views:
            due = self._views_changed(st, now)
            return self._take(st, now) or due
        return self._take(st, now)

    def _views_changed(self, base: SymbolState, now: float) -> bool:
        """``base`` has a new value: mark its views due now, or, for a throttled view whose next entry is not
        allowed yet, set its timer. Return True if any is due now."""
        due = False
        for v in base.views:
            if v.pending_since is not None or v.waiting:
                continue  # due or timed already: the flush takes the latest value then
            if v.next_at <= now:
                v.pending_since = now
                self._dirty[v.symbol] = v
                self._dirty_views.append(v)
                due = True
            else:
                v.waiting = True
                heappush(self._timers, (v.next_at, next(self._tick), v))
                if v.next_at < self.wake_at:
                    self.wake_at = v.next_at
        return due

    def flush_timers(self, now: float) -> None:
        """Mark due the throttled views whose time has come (before :attr:`pending` is asked)."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            v = heappop(timers)[2]
            if v.waiting:  # False: dropped meanwhile
                v.waiting = False
                v.pending_since = now
                self._dirty[v.symbol] = v
                self._dirty_views.append(v)
        self.wake_at = timers[0][0] if timers else inf

    def _render(self, now: float) -> None:
        """Work out the entry of every due view once (its base decoded once), before the groups take them."""
        decoded: dict[int, dict[str, Any]] = {}
        for v in self._dirty_views:
            base = v.base
            if base.encoded is None:
                continue
            entry = decoded.get(id(base))
            if entry is None:
                entry = decoded[id(base)] = decode(base.encoded)
            v.encoded, v.full, v.sent = render(v.spec, entry, v.sent)
            v.seq = base.seq
            if v.interval:
                v.next_at = now + v.interval
        self._dirty_views = []

    def _take(self, st: SymbolState, now: float) -> bool:
        """Mark ``st`` due for the next flush if anyone holds it (as :meth:`publish` does inline)."""
        if not st.groups:
            idle = self._idle
            if not st.views:  # nobody holds it: idle, the most recently updated (the last to go)
                idle.pop(st.symbol, None)
                idle[st.symbol] = now
            if len(idle) > self.max_idle_symbols:
                self._prune()
            return False
        if st.pending_since is None:
            st.pending_since = now
            self._dirty[st.symbol] = st
        return True

    def state(self, key: str) -> SymbolState | None:
        """What the hub holds for ``key`` (its last value as :attr:`SymbolState.encoded`), if anything."""
        return self._symbols.get(key)

    @property
    def pending(self) -> bool:
        """Whether updates wait for a flush (throttled views waiting for their time aside)."""
        return bool(self._dirty)

    def throttled_count(self) -> int:
        """How many (subscriber, key) subscriptions have a maximum rate (``ticker_throttled_subscriptions``)."""
        if not self._view_count:
            return 0
        symbols = self._symbols
        n = 0
        for g in self._groups.values():
            k = sum(1 for key in g.key if isinstance(st := symbols[key], ViewState) and st.interval)
            n += k * len(g.members)
        return n

    def flush(self, now: float = -inf) -> Flush[S]:
        """Collect every group's changed symbols into one payload per group and reset the pending state.

        ``now`` (monotonic) wakes the throttled views whose time has come and starts their next interval."""
        if self.wake_at <= now:
            self.flush_timers(now)
        if self._dirty_views:
            self._render(now)
        touched: list[_Group] = []
        since: list[float] = []
        for st in self._dirty.values():
            assert st.pending_since is not None
            since.append(st.pending_since)
            st.pending_since = None
            for g in st.groups:  # the innermost loop of the hot path: one step per (symbol, group)
                pending = g.pending
                if pending is None:
                    g.pending = [st]
                    touched.append(g)
                else:
                    pending.append(st)
        self._dirty.clear()
        # Once per group, and so per frame where each connection has a set of its own: no comprehension (a call
        # in Python 3.11) and no join for the usual single entry; built the same as ``HEAD + b",".join(..) + TAIL``.
        batches: list[Batch[S]] = []
        add = batches.append
        for g in touched:
            states = g.pending
            assert states is not None
            g.pending = None
            if len(states) == 1:
                add((_QUOTES_HEAD + states[0].encoded + _QUOTES_TAIL, g.members, states))  # type: ignore[operator]
            else:
                parts = [_QUOTES_HEAD]
                for st in states:
                    parts.append(st.encoded)  # type: ignore[arg-type]
                    parts.append(b",")
                parts[-1] = _QUOTES_TAIL
                add((b"".join(parts), g.members, states))
        return Flush(batches, since)

    # -- last values -------------------------------------------------------------------------
    def last(self, symbol: str) -> Quote | None:
        """The last quote of ``symbol``, if any (a real-time symbol: a delayed key keeps only its encoded entry)."""
        st = self._symbols.get(symbol)
        return st.quote if st is not None else None

    def last_encoded(self, symbols: Iterable[str]) -> list[bytes]:
        """Encoded last values (with their sequence numbers) of those ``symbols`` that have one."""
        out = []
        for s in symbols:
            st = self._symbols.get(s)
            if st is not None and (e := st.entry) is not None:
                out.append(e)
        return out

    def cached_symbols(self) -> list[str]:
        """Every symbol with a last value (real-time: delayed keys are not symbols)."""
        return [
            s
            for s, st in self._symbols.items()
            if st.encoded is not None and not is_delayed_key(s) and type(st) is SymbolState
        ]
