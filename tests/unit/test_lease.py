"""The publisher lease's decisions (ticker/lease.py) and the packing of a fenced write (ticker/broker/redis_lease.py);
the scripts themselves run against a real Redis in tests/e2e/test_publisher_lease.py."""

from __future__ import annotations

import pytest

from ticker import lease
from ticker.bars import Bar
from ticker.broker import redis_bars as rb
from ticker.broker import redis_layout as rc
from ticker.broker import redis_lease as rl
from ticker.lease import Candidacy, Refusal, refusal


def test_tokens_name_a_publisher_and_its_epoch():
    assert lease.token("host:42:ab12", 7) == "host:42:ab12#7"
    assert lease.parse_token("host:42:ab12#7") == ("host:42:ab12", 7)
    assert lease.parse_token("a#b#3") == ("a#b", 3)
    for bad in ("", "#3", "host", "host#", "host#x", "host#-1"):
        assert lease.parse_token(bad) is None, bad
    assert lease.describe("h:1:a#2") == "publisher h:1:a (epoch 2)"
    assert lease.describe("junk") == "an unknown holder 'junk'"


def test_timings_follow_the_ttl():
    assert lease.renew_every(3.0) == 1.0 and lease.poll_every(3.0) == 0.2  # every second; 5 tries a second
    assert lease.renew_every(1.5) == 0.5 and lease.poll_every(1.5) == pytest.approx(0.15)  # a short TTL
    assert lease.retake_grace(3.0) == 1.5  # a renewal and a margin
    # A standby polls many times within the TTL, and the active renews at least three times in it.
    for ttl in (lease.MIN_TTL, 1.0, 3.0, 30.0):
        assert lease.renew_every(ttl) * 3 <= ttl and lease.poll_every(ttl) < lease.renew_every(ttl)


@pytest.mark.parametrize(
    ("current", "holder", "what"),
    [
        ("me#2", "me#2", Refusal.IGNORE),  # a batch of its earlier term, refused after it retook the lease
        ("me#2", "", Refusal.RENEW),  # vacant: retake it now rather than wait for the next renewal
        ("me#2", "other#3", Refusal.STAND_DOWN),  # taken over: stand by
        ("me#2", "me#1", Refusal.STAND_DOWN),  # an older token of its own is no lease of its now
        (None, "", Refusal.STAND_DOWN),  # it knows it holds none: a standby never retakes through a write
        (None, "other#3", Refusal.STAND_DOWN),
    ],
)
def test_what_a_refused_write_means(current: str | None, holder: str, what: Refusal):
    assert refusal(current, holder) is what


def test_a_first_standby_takes_a_vacant_lease_at_once():
    c = Candidacy(3.0)
    assert c.force(0.0)  # no holder ever seen: a first start, nothing to wait for
    assert c.reason() == "no publisher held the lease" and c.planned()  # logged at INFO, not as a failover


def test_a_lapsed_lease_is_taken_at_once_and_the_log_says_whose_it_was():
    c = Candidacy(3.0)
    assert (
        c.held("a:1:x#4")
        == "standing by: publisher a:1:x (epoch 4) is active; taking over if its lease of 3 s lapses"
    )
    assert c.held("a:1:x#4") is None  # said once
    assert not c.force(100.0)  # the epoch is kept in Redis: ACQUIRE takes it without force anyway
    assert c.reason() == "the lease of publisher a:1:x (epoch 4) expired (not renewed for 3 s)"
    assert not c.planned()  # a failover: logged at WARNING
    c.heard_release("a:1:x#4")
    assert c.reason() == "publisher a:1:x (epoch 4) released the lease as it stopped" and c.planned()
    assert c.held("b:2:y#5") is not None  # someone else took it in between: its release is no longer news
    assert c.reason() == "the lease of publisher b:2:y (epoch 5) expired (not renewed for 3 s)"


def test_a_lease_redis_lost_is_left_to_its_holder_for_a_grace():
    c = Candidacy(3.0)
    c.held("a:1:x#4")
    c.lost(10.0)  # vacant and the epoch gone: Redis restarted empty
    assert not c.force(10.0) and not c.force(11.4)
    c.lost(11.0)  # seen again: the grace runs from the first sighting
    assert c.force(11.5)
    assert c.reason().startswith("Redis lost the lease of publisher a:1:x (epoch 4)")
    c.held("a:1:x#1")  # the holder retook it (a new epoch under the old id): the grace starts over next time
    assert not c.force(100.0)


def test_the_lost_reason_says_who_took_over_and_how_it_was_found():
    assert lease.lost_reason("b:2:y#5", refused=True) == (
        "publisher b:2:y (epoch 5) took over while it was paused or cut off from Redis for longer than its "
        "lease (Redis refused its write)"
    )
    assert "the lease lapsed" in lease.lost_reason("", refused=False)
    assert lease.lost_reason("b:2:y#5", refused=False).endswith("(its renewal found the lease taken)")


def held_lease(token: str | None = "me#3") -> rl.Lease:
    le = rl.Lease(rc.Layout("tk"), "me", 3.0)
    le.token = token
    return le


def test_a_fenced_batch_packs_each_command_with_its_length():
    pipe = held_lease().pipeline(object())  # type: ignore[arg-type]
    pipe.set("tk:health", b"{}", ex=5).delete("tk:a", "tk:b").publish(b"tk:ctl", b"hello")
    pipe.evalsha(
        rb.WRITE_SERIES_SHA, 1, "tk:bars:AAPL:1m", *rb.write_args([Bar(60_000, 1, 2, 0.5, 1.5, 10)], 9, False)
    )
    assert pipe.token == "me#3"
    (call,) = pipe.calls()
    assert call[:14] == [
        5,
        "SET",
        "tk:health",
        b"{}",
        "EX",
        5,
        3,
        "DEL",
        "tk:a",
        "tk:b",
        3,
        "PUBLISH",
        b"tk:ctl",
        b"hello",
    ]
    assert call[14:20] == [7, "SERIES", "tk:bars:AAPL:1m", 9, rb.BARS_TTL, 0]
    assert call[20] == 60_000 and len(call) == 22  # one t, bar pair


def test_a_large_batch_goes_in_several_calls_and_a_large_hset_in_chunks():
    pipe = held_lease().pipeline(object())  # type: ignore[arg-type]
    pipe.hset("tk:last", {f"S{i}": b"q" for i in range(2_500)})
    assert [len(c[2:]) for c in pipe.commands] == [2 * rl.HSET_CHUNK, 2 * rl.HSET_CHUNK, 1_000]
    for i in range(30):
        pipe.publish(f"tk:q:S{i}", b"x" * 10)
    series = rb.write_args([Bar(t * 1000, 1, 1, 1, 1, 1) for t in range(12_000)], 20_000, True)
    pipe.evalsha(rb.WRITE_SERIES_SHA, 1, "tk:bars:S:1s", *series)  # 24,003 words: a call of its own
    calls = pipe.calls()
    assert all(len(c) <= rl.MAX_WORDS for c in calls[:-1]) and len(calls[-1]) == 24_006
    words = [w for c in calls for w in c]
    assert words.count("HSET") == 3 and words.count("PUBLISH") == 30 and words.count("SERIES") == 1


async def test_a_batch_of_a_publisher_without_the_lease_is_refused_without_a_round_trip():
    pipe = held_lease(None).pipeline(object())  # type: ignore[arg-type]  # any command would fail
    with pytest.raises(rl.Fenced) as refused:
        await pipe.set("tk:health", b"{}").execute()
    assert refused.value.holder == ""
    with pytest.raises(ValueError, match="no script but"):
        held_lease().pipeline(object()).evalsha("f" * 40, 1, "k")  # type: ignore[arg-type]


def test_a_refusal_stands_the_lease_down_once_with_the_first_reason():
    le = held_lease()
    le.refused("me#3")  # its own current token: nothing to do
    assert le.token == "me#3" and not le.lost.is_set() and not le.renew_wanted.is_set()
    le.refused("")
    assert le.renew_wanted.is_set() and le.token == "me#3"
    le.refused("b:2:y#4")
    assert le.token is None and le.lost.is_set() and "publisher b:2:y (epoch 4) took over" in le.lost_reason
    le.stand_down("later")
    assert "b:2:y" in le.lost_reason
