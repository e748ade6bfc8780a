"""The hub: subscriber sets, last-value cache and per-symbol sequence numbers (pure, no I/O).

Subscribers with the same set of symbols share a *group*, so one flush builds one payload
per group however many connections are in it. Each update is encoded once (``encode_entry``) when it
enters the hub; a flush joins the encoded entries of a group's changed symbols into one
``quotes`` payload, holding only the latest value per symbol.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ticker import protocol
from ticker.delay import delayed_key, is_delayed_key
from ticker.errors import TooManySymbols
from ticker.quote import Quote, encode_entry

DemandListener = Callable[[frozenset[str]], None]
S = TypeVar("S", bound=Hashable)


class SymbolState:
    """What the hub holds for one hub key (a symbol, or a delayed symbol's :func:`~ticker.delay.delayed_key`);
    batches carry these for the updates they hold.

    ``seq`` starts at the hub's count of updates so far, not at 0: a symbol evicted from the idle
    cache and seen again later keeps going up from above any ``q`` it had before.
    """

    __slots__ = ("encoded", "groups", "pending_since", "quote", "seq", "symbol")

    def __init__(self, symbol: str, seq: int) -> None:
        self.symbol = symbol
        self.seq = seq
        self.quote: Quote | None = None
        self.encoded: bytes | None = None
        self.groups: set[_Group] = set()
        self.pending_since: float | None = None


class _Group:
    __slots__ = ("key", "members", "pending")

    def __init__(self, key: frozenset[str]) -> None:
        self.key = key
        self.members: set[Any] = set()
        self.pending: list[SymbolState] = []  # symbols whose update is due at the next flush


#: One payload of a flush, the subscribers that all get exactly these bytes, and the symbols in it.
#: A plain tuple: thousands are made per second.
Batch = tuple[bytes, set[S], list[SymbolState]]

_QUOTES_HEAD = b'{"type":"' + protocol.QUOTES + b'","data":['


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
        max_idle_symbols: int = 20_000,
    ) -> None:
        self.max_symbols = max_symbols
        self.max_idle_symbols = max_idle_symbols
        self.on_demand = on_demand
        self._symbols: dict[str, SymbolState] = {}
        self._groups: dict[frozenset[str], _Group] = {}
        self._subs: dict[S, frozenset[str]] = {}
        self._dirty: dict[str, SymbolState] = {}
        self._idle: dict[str, None] = {}  # symbols nobody wants, oldest first (bounded cache)
        self._wanted: set[str] = set()  # symbols with at least one subscriber, kept up to date
        self._order: dict[S, tuple[str, ...]] = {}  # each subscriber's keys in the order it subscribed them
        #: Bumped by every change of any subscriber's set (the node's allotment is worked out again).
        self.changes = 0
        self.updates_in = 0

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
        return [] if st is None else [m for g in st.groups for m in g.members]

    def symbols_of(self, sub: S) -> frozenset[str]:
        """The subscriber's current symbol set."""
        return self._subs.get(sub, frozenset())

    def in_order(self) -> Iterator[tuple[S, tuple[str, ...]]]:
        """Every subscriber, the first registered first, with its keys in the order it subscribed them."""
        order = self._order
        return ((sub, order.get(sub, ())) for sub in self._subs)

    def subscribe(self, sub: S, symbols: Iterable[str]) -> tuple[list[str], list[bytes]]:
        """Add ``symbols``; return (newly added symbols, encoded last values of those that have one).

        Raises :class:`TooManySymbols` (subscribing nothing) when the cap would be passed.
        """
        old = self._subs.get(sub, frozenset())
        added = [s for s in dict.fromkeys(symbols) if s not in old]
        if not added:
            return [], []
        new = old.union(added)
        if len(new) > self.max_symbols:
            raise TooManySymbols(self.max_symbols, len(new))
        self._subs[sub] = new
        self._order[sub] = self._order.get(sub, ()) + tuple(added)
        self._move(sub, old, new)
        snap = [st.encoded for s in added if (st := self._symbols[s]).encoded is not None]
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

    def _move(self, sub: S, old: frozenset[str], new: frozenset[str]) -> None:
        self.changes += 1
        changed = False
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
                        if st.encoded is None:  # never had data: nothing worth keeping
                            del self._symbols[s]
                        else:
                            self._idle[s] = None
        if new:
            g2 = self._groups.get(new)
            if g2 is None:
                g2 = self._groups[new] = _Group(new)
                for s in new:
                    st2 = self._symbols.get(s)
                    if st2 is None:
                        st2 = self._symbols[s] = SymbolState(s, self.updates_in)
                    if not st2.groups:
                        changed = True
                        self._wanted.add(s)
                        self._idle.pop(s, None)
                    st2.groups.add(g2)
            g2.members.add(sub)
        if changed:
            self._prune()
            if self.on_demand is not None:
                self.on_demand(self.demand())

    def _prune(self) -> None:
        # Keep last values of unwanted symbols for snapshots, but only the newest max_idle_symbols of them.
        idle = self._idle
        while len(idle) > self.max_idle_symbols:
            s = next(iter(idle))
            del idle[s], self._symbols[s]

    # -- updates -----------------------------------------------------------------------------
    def publish(self, quote: Quote, now: float) -> bool:
        """Take one update entering the hub at monotonic time ``now``; return True if it is due for a flush."""
        st = self._symbols.get(quote.symbol)
        if st is None:
            st = self._symbols[quote.symbol] = SymbolState(quote.symbol, self.updates_in)
            self._idle[quote.symbol] = None
        st.seq += 1
        self.updates_in += 1
        st.quote = quote
        st.encoded = encode_entry(quote, st.seq)
        # _take inlined: this runs once per update, the hot path's entry.
        if not st.groups:
            if len(self._idle) > self.max_idle_symbols:
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
            self._idle[key] = None
        st.seq = seq
        st.quote = None
        st.encoded = encoded
        return self._take(st, now)

    def _take(self, st: SymbolState, now: float) -> bool:
        """Mark ``st`` due for the next flush if anyone holds it (as :meth:`publish` does inline)."""
        if not st.groups:
            if len(self._idle) > self.max_idle_symbols:
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
        """Whether updates wait for a flush."""
        return bool(self._dirty)

    def flush(self) -> Flush[S]:
        """Collect every group's changed symbols into one payload per group and reset the pending state."""
        touched: list[_Group] = []
        since: list[float] = []
        for st in self._dirty.values():
            assert st.pending_since is not None
            since.append(st.pending_since)
            st.pending_since = None
            for g in st.groups:  # the innermost loop of the hot path: one append per (symbol, group)
                pending = g.pending
                if not pending:
                    touched.append(g)
                pending.append(st)
        self._dirty.clear()
        batches: list[Batch[S]] = []
        for g in touched:
            states = g.pending
            g.pending = []
            payload = _QUOTES_HEAD + b",".join([st.encoded for st in states]) + b"]}"  # type: ignore[misc]
            batches.append((payload, g.members, states))
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
            if st is not None and st.encoded is not None:
                out.append(st.encoded)
        return out

    def cached_symbols(self) -> list[str]:
        """Every symbol with a last value (real-time: delayed keys are not symbols)."""
        return [s for s, st in self._symbols.items() if st.encoded is not None and not is_delayed_key(s)]
