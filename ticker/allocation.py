"""Which demanded symbols a node serves when it cannot serve them all (pure): a fair share per connection.

Two kinds of limit make upstream symbols scarce: the node's own budget (``--max-active-symbols``, every
symbol it asks its feeds or broker for) and a *pool*: a feed's provider plan limit (Finnhub's 50,
Alpaca IEX's 30) over the symbols that feed carries. :func:`allot` hands the slots out **round-robin**
over the connections, oldest first, each taking its next symbol in the order it subscribed them: a
symbol someone already holds costs nothing more, so a connection sharing symbols gets them too; a
symbol whose pool is full is passed over for the connection's next one. So a connection asking for 50
symbols gets its share, not every slot, and with ``n`` connections each gets at least ``budget // n``
of the symbols it asks for (more when others ask for fewer).

*Silent* symbols (served for a while with no data) come last: every connection's other symbols are
served first, so upstream slots held by symbols that produce nothing are the first released.

The allotment keeps no memory of the previous one: it is a function of the connections in arrival
order, each one's symbols in subscribe order and the silent set. That is what keeps it stable: a
newcomer takes slots from the others only down to their fair share (the connections arrived before it
keep the first of their symbols), and a connection that leaves, or a symbol nobody wants any more,
frees slots for the next symbols in the same round-robin order (the oldest requests first).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: A symbol's pool (a feed with a symbol limit), or None: only the node's budget applies.
PoolOf = Callable[[str], str | None]


def _no_pool(symbol: str) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class Allotment:
    """What :func:`allot` decided: the symbols served, and why each other demanded symbol is not."""

    served: frozenset[str]
    #: Demanded, not served: the node's budget is spent.
    over_budget: frozenset[str] = frozenset()
    #: Demanded, not served: symbol → the pool (feed) whose limit is spent.
    over_pool: Mapping[str, str] = field(default_factory=dict)

    @property
    def unserved(self) -> int:
        """How many demanded symbols are not served."""
        return len(self.over_budget) + len(self.over_pool)


def scarce(
    demand: Collection[str],
    budget: int | None,
    pools: Mapping[str, int] | None = None,
    pool_of: PoolOf = _no_pool,
) -> bool:
    """Whether ``demand`` does not fit: more symbols than ``budget``, or more of a pool's than its limit."""
    if budget is not None and len(demand) > budget:
        return True
    if not pools:
        return False
    counts = Counter(p for s in demand if (p := pool_of(s)) is not None and p in pools)
    return any(n > pools[p] for p, n in counts.items())


def allot(
    wants: Iterable[Sequence[str]],
    budget: int | None,
    pools: Mapping[str, int] | None = None,
    pool_of: PoolOf = _no_pool,
    silent: Collection[str] = (),
) -> Allotment:
    """Serve at most ``budget`` (None: any number) of the symbols in ``wants`` (each connection's symbols
    in subscribe order, the connections oldest first), at most ``pools[p]`` of those whose ``pool_of`` is
    ``p``, round-robin over the connections, ``silent`` symbols after all others (module docstring)."""
    lists = [w for w in wants if w]
    demand = frozenset(s for w in lists for s in w)
    pools = pools or {}
    if not scarce(demand, budget, pools, pool_of):
        return Allotment(demand)
    served: set[str] = set()
    refused: dict[str, str] = {}  # symbol → its full pool
    room = dict(pools)
    left = [len(demand) if budget is None else budget]
    if silent:
        _round_robin([[s for s in w if s not in silent] for w in lists], served, refused, room, left, pool_of)
        _round_robin([[s for s in w if s in silent] for w in lists], served, refused, room, left, pool_of)
    else:
        _round_robin(lists, served, refused, room, left, pool_of)
    over = demand.difference(served, refused)
    return Allotment(frozenset(served), over, refused)


def _round_robin(
    lists: Sequence[Sequence[str]],
    served: set[str],
    refused: dict[str, str],
    room: dict[str, int],
    left: list[int],
    pool_of: PoolOf,
) -> None:
    """One pass of turns: each connection in turn takes its next symbol that is neither served nor refused
    (a shared one already served costs it nothing), until the budget (``left[0]``) or every list ends."""
    cursors = [0] * len(lists)
    turns = deque(i for i, w in enumerate(lists) if w)
    while turns and left[0] > 0:
        i = turns.popleft()
        w, k = lists[i], cursors[i]
        while k < len(w):
            s = w[k]
            k += 1
            if s in served or s in refused:
                continue
            p = pool_of(s)
            if p is not None and p in room:
                if room[p] <= 0:
                    refused[s] = p
                    continue
                room[p] -= 1
            served.add(s)
            left[0] -= 1
            turns.append(i)
            break
        cursors[i] = k
