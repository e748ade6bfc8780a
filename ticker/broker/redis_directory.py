"""The symbol directory through Redis: the publisher writes its feeds' directory, edge nodes read it.

Layout (``P`` is ``--broker-prefix``):

- ``P:directory`` — hash SYMBOL → ``{"name","exchange","type","currency"}`` (compact JSON), every
  symbol the publisher's feeds have loaded.
- ``P:directory:meta`` — ``{"publisher":ID,"version":N,"complete":BOOL,"loading":[FEED,...],"symbols":N}``:
  which publisher wrote it, its directory's version, and the feeds still loading (or unable to tell);
  while any is, a symbol the hash lacks is ``pending`` rather than ``unknown``.
- A write fills ``P:directory:tmp:ID`` in chunks, then in one ``MULTI`` renames it into place, sets
  the meta and says ``directory`` on ``P:ctl``. A reader takes meta and hash in one ``MULTI``, so it
  never sees one write's meta with another's entries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from ticker.broker import redis_layout as rc
from ticker.directory import Directory, SymbolInfo
from ticker.symbols import valid_symbol

log = logging.getLogger("ticker.redis")

CHUNK = 2000  # entries per pipelined HSET
DECODE_STEP = 500  # entries decoded between two yields to the loop (a few ms)
TMP_TTL = 300  # seconds a half-written directory of a crashed publisher lingers
PUBLISHER = "publisher"  # the edge's directory source holding the publisher's entries


@dataclass(frozen=True, slots=True)
class DirectoryMeta:
    """What ``P:directory:meta`` says of the directory hash next to it."""

    publisher: str
    version: int
    loading: tuple[str, ...] = field(default_factory=tuple)
    symbols: int = 0

    @property
    def complete(self) -> bool:
        """Whether every feed of the publisher has loaded: a symbol the hash lacks is then unknown."""
        return not self.loading

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "publisher": self.publisher,
                "version": self.version,
                "complete": self.complete,
                "loading": list(self.loading),
                "symbols": self.symbols,
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> DirectoryMeta:
        """Raises ``ValueError`` when malformed."""
        m = rc.json_object(raw, "directory meta")
        pub, version, loading, n = (
            m.get("publisher"),
            m.get("version"),
            m.get("loading", []),
            m.get("symbols", 0),
        )
        if not isinstance(pub, str) or isinstance(version, bool) or not isinstance(version, int):
            raise ValueError("malformed directory meta: bad publisher or version")
        if not isinstance(loading, list) or not all(isinstance(s, str) and s for s in loading):
            raise ValueError("malformed directory meta: bad loading")
        if m.get("complete") is True and loading:
            raise ValueError("malformed directory meta: complete while loading")
        if m.get("complete") is False and not loading:
            loading = [PUBLISHER]  # incomplete without saying which feed: still pending
        return cls(pub, version, tuple(loading), n if isinstance(n, int) and not isinstance(n, bool) else 0)


def encode_info(info: SymbolInfo) -> bytes:
    """One hash value: ``{"name","exchange","type","currency"}`` (the symbol is the field)."""
    return orjson.dumps(
        {"name": info.name, "exchange": info.exchange, "type": info.type, "currency": info.currency}
    )


def decode_info(symbol: str, raw: bytes | str, pool: dict[str, str] | None = None) -> SymbolInfo:
    """The entry of one hash field; ``pool`` shares the few distinct exchange/type/currency strings
    between entries. Raises ``ValueError`` when malformed."""
    if valid_symbol(symbol) != symbol:
        raise ValueError(f"malformed directory entry: bad symbol {symbol!r}")
    v = rc.json_object(raw, f"directory entry {symbol!r}")
    name, exchange, type_, currency = (
        v.get("name"),
        v.get("exchange", ""),
        v.get("type"),
        v.get("currency", ""),
    )
    if not (isinstance(name, str) and isinstance(exchange, str) and isinstance(currency, str)):
        raise ValueError(f"malformed directory entry {symbol!r}: bad field")
    if not isinstance(type_, str) or not type_:
        raise ValueError(f"malformed directory entry {symbol!r}: bad type")
    if pool is not None:
        exchange, type_, currency = (pool.setdefault(s, s) for s in (exchange, type_, currency))
    return SymbolInfo(symbol, name, exchange, type_, currency)


def build(meta: DirectoryMeta | None, entries: Iterable[SymbolInfo]) -> Directory:
    """An edge node's directory: the publisher's entries as one source, each publisher feed still loading
    as a source of its own (so a symbol missing from the entries is ``pending`` until they load); without
    any ``meta`` (no publisher has written one yet) every symbol is ``pending``."""
    d = Directory()
    if meta is None:
        d.expect(PUBLISHER)
        return d
    d.replace(PUBLISHER, entries)
    for name in meta.loading:
        d.expect(f"{PUBLISHER}:{name}")
    return d


async def write(
    client: Redis,
    layout: rc.Layout,
    publisher: str,
    directory: Directory,
    commit: Callable[[Redis], Any] | None = None,
) -> DirectoryMeta:
    """Write ``directory`` as ``publisher``'s (chunked, then swapped in atomically) and announce it. ``commit``
    makes the pipeline of the swap (default: a ``MULTI``; the publisher's is fenced by its lease)."""
    version, loading = directory.version, tuple(directory.loading())
    entries = list(directory.entries())  # a snapshot: the runner may replace entries while we await
    tmp, key = layout.directory_tmp(publisher), layout.directory
    meta = DirectoryMeta(publisher, version, loading, len(entries))
    await client.delete(tmp)
    for start in range(0, len(entries), CHUNK):
        chunk = entries[start : start + CHUNK]
        pipe = client.pipeline(transaction=False)
        pipe.hset(tmp, mapping={e.symbol: encode_info(e) for e in chunk})
        pipe.expire(tmp, TMP_TTL)
        await pipe.execute()
    pipe = client.pipeline(transaction=True) if commit is None else commit(client)
    if entries:
        pipe.rename(tmp, key)
        pipe.persist(key)
    else:
        pipe.delete(key)
    pipe.set(layout.directory_meta, meta.encode())
    pipe.publish(layout.ctl, rc.DIRECTORY)
    await pipe.execute()
    return meta


async def read_meta(client: Redis, layout: rc.Layout) -> bytes | None:
    """The raw meta (cheap: to tell whether the directory changed since the last read)."""
    raw = await client.get(layout.directory_meta)
    return raw.encode() if isinstance(raw, str) else raw


async def read(client: Redis, layout: rc.Layout) -> tuple[bytes, DirectoryMeta, list[SymbolInfo]] | None:
    """(raw meta, meta, entries) as one write left them, or None when no publisher has written one.

    Malformed entries are skipped (and logged); decoding yields to the loop every
    :data:`DECODE_STEP` entries, so a large directory does not hold up quotes. Raises ``ValueError`` for a
    malformed meta.
    """
    pipe = client.pipeline(transaction=True)
    pipe.get(layout.directory_meta)
    pipe.hgetall(layout.directory)
    raw_meta, rows = await pipe.execute()
    if raw_meta is None:
        return None
    meta = DirectoryMeta.decode(raw_meta)
    entries = await decode_rows(rows)
    return raw_meta, meta, entries


async def decode_rows(rows: Mapping[bytes, bytes] | Sequence[tuple[bytes, bytes]]) -> list[SymbolInfo]:
    """Decode hash rows, skipping malformed ones, yielding to the loop between chunks."""
    items: list[tuple[Any, Any]] = list(rows.items()) if isinstance(rows, Mapping) else list(rows)
    out: list[SymbolInfo] = []
    pool: dict[str, str] = {}
    bad = 0
    for i, (field_, raw) in enumerate(items):
        if i and i % DECODE_STEP == 0:
            await asyncio.sleep(0)
        try:
            symbol = field_.decode() if isinstance(field_, bytes) else str(field_)
            out.append(decode_info(symbol, raw, pool))
        except (ValueError, UnicodeDecodeError):
            bad += 1
    if bad:
        log.warning("skipped %d malformed entries of the symbol directory", bad)
    return out
