"""Tables sized at a peak, rebuilt to their size now (pure).

A dict or set never shrinks: one that held 40,000 symbols during a burst of demand keeps a 2 MiB table
while it holds 30. :func:`compact` rebuilds such a table in place (the same object, so every holder of it
sees the result) when it is far larger than its entries need; a table at its steady size is left alone,
so calling it every few seconds costs one size check per table.
"""

from __future__ import annotations

import sys
from collections import OrderedDict, defaultdict
from typing import Any

#: A table smaller than this (bytes, ``sys.getsizeof``) is never rebuilt: at most a few pages to win.
MIN_BYTES = 64 << 10
#: Rebuilt past this many bytes of table per entry. A dict or set at its own size takes under 100.
SPARSE_BYTES = 512


def sparse(table: dict[Any, Any] | set[Any]) -> bool:
    """Whether ``table`` is far larger than its entries need (see :data:`SPARSE_BYTES`)."""
    size = sys.getsizeof(table)
    return size >= MIN_BYTES and size > SPARSE_BYTES * len(table)


def compact(table: dict[Any, Any] | set[Any]) -> int:
    """Rebuild ``table`` in place at the size its entries need, keeping their order, if it is sparse; the
    bytes let go (0: left alone). Dicts, ordered and default dicts and sets only (others are left alone)."""
    if not sparse(table):
        return 0
    before = sys.getsizeof(table)
    kind = type(table)
    if kind is set:
        assert isinstance(table, set)
        members = list(table)
        table.clear()  # frees the table: the update below sizes a new one for what is left
        table.update(members)
    elif kind is dict or kind is defaultdict:
        assert isinstance(table, dict)
        items = list(table.items())
        table.clear()
        dict.update(table, items)
    elif kind is OrderedDict:
        assert isinstance(table, OrderedDict)
        items = list(table.items())
        table.clear()
        table.update(items)
    else:
        return 0
    return max(0, before - sys.getsizeof(table))


def compact_all(*tables: dict[Any, Any] | set[Any]) -> int:
    """:func:`compact` each of ``tables``; the bytes let go."""
    return sum(compact(t) for t in tables)


def compact_held(*owners: object) -> int:
    """:func:`compact` every dict and set held in an attribute of each of ``owners`` (``__dict__`` and
    ``__slots__``; a name-mangled slot is not looked at); the bytes let go. Only for owners none of whose
    tables an iterator spans a pause of the event loop (a rebuilt table would be walked from the wrong
    place): each caller names its owners, never a whole object graph."""
    freed = 0
    for owner in owners:
        values = list(getattr(owner, "__dict__", {}).values())
        for cls in type(owner).__mro__:
            slots = getattr(cls, "__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                value = getattr(owner, name, None)
                if value is not None:
                    values.append(value)
        freed += sum(compact(v) for v in values if isinstance(v, (dict, set)))
    return freed
