"""The Redis Cluster layout (pure, no Redis needed): bucket tags, where each name hashes, cluster URLs, the fence
rule. The real cluster is in tests/e2e/test_redis_cluster.py."""

from __future__ import annotations

import random
import string
from collections import Counter

import pytest

from ticker.broker import redis_layout as rc
from ticker.broker.options import key_prefix
from ticker.broker.redis_cluster import is_cluster, parse_url
from ticker.broker.redis_fence import stale
from ticker.broker.redis_slots import BUCKET_SLOTS, BUCKETS, SLOTS, TAGS, bucket_of, hash_tag, slot_of
from ticker.errors import OptionError

LAYOUT = rc.Layout("ticker", cluster=True)


def equal_masters(n: int) -> list[int]:
    """The first slot of each of ``n`` masters owning equal contiguous ranges (as redis-cli assigns them)."""
    return [i * SLOTS // n for i in range(n)]


def master_index(slot: int, starts: list[int]) -> int:
    return max(i for i, start in enumerate(starts) if start <= slot)


def test_the_bucket_tags_are_pinned_and_each_sits_mid_slice():
    # Part of the layout: every publisher and edge node must compute the same tags.
    assert len(TAGS) == len(set(TAGS)) == BUCKETS == 120
    assert TAGS[:6] == ("108", "351", "100", "18", "117", "292") and TAGS[-1] == "158"
    width = SLOTS / BUCKETS
    for b, slot in enumerate(BUCKET_SLOTS):
        assert abs(slot + 0.5 - (b + 0.5) * width) <= width / 4
    assert list(BUCKET_SLOTS) == sorted(BUCKET_SLOTS)


@pytest.mark.parametrize("masters", [1, 2, 3, 4, 5, 6, 8, 10, 12])
def test_equal_masters_own_equal_numbers_of_buckets(masters: int):
    starts = equal_masters(masters)
    counts = Counter(master_index(slot, starts) for slot in BUCKET_SLOTS)
    assert sorted(counts.values()) == [BUCKETS // masters] * masters


def test_symbols_spread_evenly_over_three_masters():
    rng = random.Random(7)
    symbols = {"".join(rng.choices(string.ascii_uppercase, k=rng.randint(1, 5))) for _ in range(12_000)}
    starts = equal_masters(3)
    counts = Counter(master_index(BUCKET_SLOTS[bucket_of(s)], starts) for s in symbols)
    assert all(0.3 < c / len(symbols) < 0.37 for c in counts.values()), counts
    # A symbol's bucket is the slice of the slot space holding its own slot.
    assert all(bucket_of(s) == slot_of(s) * BUCKETS // SLOTS for s in list(symbols)[:100])


@pytest.mark.parametrize("symbol", ["AAPL", "BRK.B", "BTC/USD", "ES:CME", "X_1-2", "A" * 32])
def test_every_name_of_a_symbol_hashes_to_its_bucket_slot(symbol: str):
    b = bucket_of(symbol)
    names: list[str | bytes] = [LAYOUT.channel(symbol), LAYOUT.bar_channel(symbol), LAYOUT.bars(symbol, "1m")]
    names += [LAYOUT.bars_ready(symbol), LAYOUT.last_of(b), LAYOUT.fence(b)]
    assert {slot_of(n) for n in names} == {BUCKET_SLOTS[b]}
    assert LAYOUT.symbol_of(LAYOUT.channel(symbol)) == symbol
    assert LAYOUT.channel(symbol).startswith(LAYOUT.channel_prefix(b))
    assert LAYOUT.bar_channel(symbol).startswith(LAYOUT.bar_channel_prefix)
    assert (
        LAYOUT.fence_of(LAYOUT.bars(symbol, "1d"))
        == LAYOUT.fence_of(LAYOUT.channel(symbol))
        == LAYOUT.fence(b)
    )


def test_the_names_of_no_symbol_share_the_slot_of_the_prefix_and_are_fenced_by_the_lease():
    names: list[str | bytes] = [
        LAYOUT.lease,
        LAYOUT.epoch,
        LAYOUT.source,
        LAYOUT.nodes,
        LAYOUT.demand("h:1:ab"),
        LAYOUT.health,
    ]
    names += [
        LAYOUT.directory,
        LAYOUT.directory_meta,
        LAYOUT.directory_tmp("h:1:ab"),
        LAYOUT.ctl,
        LAYOUT.publishers,
    ]
    assert {slot_of(n) for n in names} == {slot_of("ticker")}
    assert {hash_tag(n) for n in names} == {"ticker"}
    assert {LAYOUT.fence_of(n) for n in names} == {LAYOUT.lease}
    assert LAYOUT.lease == "{ticker}:lease" and LAYOUT.publish_command == "SPUBLISH"
    with pytest.raises(ValueError):
        LAYOUT.fence_of("ticker:stray")


def test_one_redis_keeps_its_names():
    lay = rc.Layout("tk")
    assert (
        lay.channel("AAPL") == b"tk:q:AAPL"
        and lay.lease == "tk:lease"
        and lay.bars("A", "1m") == "tk:bars:A:1m"
    )
    assert lay.publish_command == "PUBLISH" and rc.layout_of("redis://h:1/0", "tk") == lay
    assert rc.layout_of("redis+cluster://h:1", "tk") == rc.Layout("tk", cluster=True)


def test_cluster_urls():
    got = parse_url("redis+cluster://user:pw@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    assert got.seeds == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert (got.username, got.password, got.tls) == ("user", "pw", False)
    tls = parse_url("rediss+cluster://:pw@h:7000/0?ssl_cert_reqs=none")
    assert (
        tls.tls
        and tls.password == "pw"
        and tls.username is None
        and tls.tls_options == (("ssl_cert_reqs", "none"),)
    )
    assert is_cluster("REDIS+CLUSTER://h:1") and not is_cluster("redis://h:1")
    for bad in (
        "redis+cluster://h:1/2",
        "redis+cluster://h:99999",
        "redis+cluster://:1",
        "redis+cluster://h:1?x=1",
    ):
        with pytest.raises(ValueError):
            rc.check_url(bad)
    assert rc.check_url("redis+cluster://h:1,h:2") == "redis+cluster://h:1,h:2"
    assert rc.redact("redis+cluster://u:secret@h:1,h:2") == "redis+cluster://u:***@h:1,h:2"


def test_a_prefix_has_no_braces():
    with pytest.raises(OptionError):
        key_prefix("a{b}")


@pytest.mark.parametrize(
    ("holder", "is_stale"),
    [
        ("", True),  # vacant: not mirrored yet, or lost with a shard
        ("me#3", True),  # its own earlier term
        ("other#4", True),  # an earlier holder's term
        ("other#6", False),  # a later term: another publisher took over
        ("other#5", False),  # the same term of another publisher (an epoch counter lost with its shard)
        ("junk", False),
    ],
)
def test_a_refused_write_stands_down_only_for_a_later_term(holder: str, is_stale: bool):
    assert stale(holder, "me", 5) is is_stale
