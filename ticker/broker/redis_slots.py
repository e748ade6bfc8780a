"""Where a symbol's keys live in a Redis Cluster: hash slots, and the buckets that group symbols on them.

A cluster places a key on one of 16,384 hash slots, CRC16 of its hash tag (the text between its first ``{`` and the
next ``}``) or of the whole key. A Lua script may only touch keys of one slot, and every write of the publisher is
a script that checks its fence (ticker/broker/redis_fence.py): one fence key per slot used. So symbols are grouped
in :data:`BUCKETS` buckets, each pinned to one slot by its hash tag (:data:`TAGS`): a symbol goes to the bucket
whose slice of the slot space holds the symbol's own slot (``CRC16(symbol)``), so symbols spread as evenly as
CRC16 spreads them; each bucket's tag hashes to a slot near the middle of its slice, so masters owning equal
contiguous slot ranges (what ``redis-cli --cluster create`` makes) own equal numbers of buckets (120 buckets: 40
each of 3 masters, 30 of 4, 24 of 5, 20 of 6, 15 of 8). The tags are part of the layout: every publisher and
edge node must compute the same ones (tests pin them).
"""

from __future__ import annotations

from redis.crc import REDIS_CLUSTER_HASH_SLOTS as SLOTS
from redis.crc import key_slot

BUCKETS = 120  # a multiple of 1-6, 8, 10 and 12: as many buckets on each of that many equal masters


def slot_of(key: str | bytes) -> int:
    """The hash slot of ``key`` (its hash tag's, if it has one), as Redis Cluster computes it."""
    return key_slot(key.encode() if isinstance(key, str) else key)


def _tags() -> tuple[str, ...]:
    """The hash tag of each bucket: the first decimal number (0, 1, 2, ...) whose slot lies in the middle half of
    the bucket's slice of the slot space."""
    width = SLOTS / BUCKETS
    tags: list[str | None] = [None] * BUCKETS
    left, n = BUCKETS, 0
    while left:
        text = str(n)
        slot = slot_of(text)
        bucket = int(slot // width)
        if tags[bucket] is None and abs(slot + 0.5 - (bucket + 0.5) * width) <= width / 4:
            tags[bucket] = text
            left -= 1
        n += 1
    return tuple(t for t in tags if t is not None)


#: Bucket → its hash tag (the text inside ``{...}`` of every key and channel of its symbols).
TAGS: tuple[str, ...] = _tags()
#: Hash tag → its bucket.
TAG_BUCKETS: dict[str, int] = {t: b for b, t in enumerate(TAGS)}
#: Bucket → the slot of its tag (where every key of its symbols lives).
BUCKET_SLOTS: tuple[int, ...] = tuple(slot_of(t) for t in TAGS)


def bucket_of(symbol: str) -> int:
    """The bucket of ``symbol``: the one whose slice of the slot space holds the symbol's own slot."""
    return slot_of(symbol) * BUCKETS // SLOTS


def hash_tag(key: str | bytes) -> str | None:
    """The hash tag of ``key`` (the text between its first ``{`` and the next ``}``, if not empty), else None."""
    text = key.decode() if isinstance(key, bytes) else key
    start = text.find("{")
    end = text.find("}", start + 1) if start >= 0 else -1
    return text[start + 1 : end] if end > start + 1 else None
