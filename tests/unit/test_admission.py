"""Per-IP admission, pure: connection slots per address, connect and request rates, the process rate,
bounded memory; the clock is injected."""

from __future__ import annotations

import pytest

from ticker.server.admission import (
    IP_LIMIT,
    IP_RATE,
    PROCESS_RATE,
    Admission,
    RateTable,
    address_key,
    retry_after,
)


def _admission(
    max_per_ip: int = 1000,
    connect: tuple[float, int] = (20.0, 100),
    process: tuple[float, int] = (2000.0, 2000),
    rest: tuple[float, int] = (20.0, 100),
    max_tracked: int = 1000,
) -> Admission:
    return Admission(max_per_ip, connect, process, rest, max_tracked)


def test_ipv4_counts_alone_and_ipv6_by_its_64() -> None:
    assert address_key("10.0.0.1") == "10.0.0.1"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("") == ""  # a unix socket peer: counted as itself
    assert address_key("not:an:address") == "not:an:address"


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [retry_after(x) for x in (0.0, 0.01, 1.0, 1.2, 9.99)] == [1, 1, 1, 2, 10]


def test_connections_per_address_are_capped_and_given_back() -> None:
    adm = _admission(max_per_ip=3)
    assert [adm.connect("10.0.0.1", 0.0) for _ in range(3)] == [None, None, None]
    refused = adm.connect("10.0.0.1", 0.0)
    assert refused is not None
    assert (refused.status, refused.code, refused.reason) == (429, "ip_limit", IP_LIMIT)
    assert refused.headers == {"Retry-After": str(refused.retry_after)} and refused.retry_after >= 1
    assert refused.body == {
        "error": {"code": "ip_limit", "message": "too many connections from this address"}
    }
    assert adm.connect("10.0.0.2", 0.0) is None  # another address is not affected
    adm.release("10.0.0.1")
    assert adm.open_from("10.0.0.1") == 2
    assert adm.connect("10.0.0.1", 0.0) is None


def test_the_cap_holds_for_a_whole_ipv6_64() -> None:
    adm = _admission(max_per_ip=2)
    assert adm.connect("2001:db8::1", 0.0) is None
    assert adm.connect("2001:db8::2", 0.0) is None
    refused = adm.connect("2001:db8::ffff:3", 0.0)
    assert refused is not None and refused.reason == IP_LIMIT
    assert adm.open_from("2001:db8::9") == 2


def test_a_refusal_at_the_cap_spends_no_connect_token() -> None:
    adm = _admission(max_per_ip=1, connect=(1.0, 2))
    assert adm.connect("10.0.0.1", 0.0) is None  # one token left
    for _ in range(50):
        refused = adm.connect("10.0.0.1", 0.0)
        assert refused is not None and refused.reason == IP_LIMIT
    adm.release("10.0.0.1")
    assert adm.connect("10.0.0.1", 0.0) is None  # the second token was still there


def test_release_forgets_an_address_without_connections() -> None:
    adm = _admission()
    adm.connect("10.0.0.1", 0.0)
    adm.release("10.0.0.1")
    adm.release("10.0.0.1")  # one too many does not go negative
    assert adm.open_from("10.0.0.1") == 0
    assert adm.tracked() == 1  # only its connect bucket, until that refills


def test_connect_rate_per_address_refuses_past_the_burst_with_the_wait() -> None:
    adm = _admission(connect=(2.0, 5))
    for _ in range(5):
        assert adm.connect("10.0.0.1", 100.0) is None
    refused = adm.connect("10.0.0.1", 100.0)
    assert refused is not None
    assert (refused.status, refused.code, refused.reason, refused.retry_after) == (
        429,
        "rate_limited",
        IP_RATE,
        1,
    )
    assert "retry after 1 s" in refused.message
    assert adm.connect("10.0.0.2", 100.0) is None  # another address has its own bucket
    assert adm.connect("10.0.0.1", 100.5) is None  # half a second: one token at 2/s
    assert adm.connect("10.0.0.1", 100.5) is not None


def test_retry_after_of_a_slow_rate_is_the_time_to_the_next_token() -> None:
    adm = _admission(connect=(0.25, 1))
    assert adm.connect("10.0.0.1", 0.0) is None
    refused = adm.connect("10.0.0.1", 1.0)  # 0.25 token there, 0.75 missing at 0.25/s
    assert refused is not None and refused.retry_after == 3


def test_process_rate_refuses_every_address_with_503() -> None:
    adm = _admission(process=(10.0, 3))
    assert [adm.connect(f"10.0.0.{i}", 0.0) for i in range(3)] == [None, None, None]
    refused = adm.connect("10.0.0.9", 0.0)
    assert refused is not None
    assert (refused.status, refused.code, refused.reason, refused.retry_after) == (
        503,
        "unavailable",
        PROCESS_RATE,
        1,
    )
    assert adm.open_from("10.0.0.9") == 0  # nothing taken
    assert adm.connect("10.0.0.9", 0.1) is None  # 10/s: a token after 0.1 s


def test_an_address_over_its_rate_does_not_drain_the_process_bucket() -> None:
    adm = _admission(connect=(1.0, 2), process=(1.0, 3))
    for _ in range(100):
        adm.connect("10.0.0.66", 0.0)  # two get in, the rest are refused per address
    assert adm.connect("10.0.0.1", 0.0) is None  # the process bucket still had its third token
    refused = adm.connect("10.0.0.2", 0.0)
    assert refused is not None and refused.reason == PROCESS_RATE


def test_rest_requests_have_their_own_bucket() -> None:
    adm = _admission(connect=(1.0, 1), rest=(4.0, 2))
    assert adm.connect("10.0.0.1", 0.0) is None
    assert adm.request("10.0.0.1", 0.0) is None  # connects spent nothing of the requests' bucket
    assert adm.request("10.0.0.1", 0.0) is None
    refused = adm.request("10.0.0.1", 0.0)
    assert refused is not None
    assert (refused.status, refused.code, refused.reason, refused.retry_after) == (
        429,
        "rate_limited",
        IP_RATE,
        1,
    )
    assert refused.message == "too many requests from this address; retry after 1 s"
    assert adm.request("10.0.0.1", 0.25) is None


def test_a_rate_table_forgets_buckets_that_refilled() -> None:
    table = RateTable(10.0, 5, max_keys=100)  # a bucket that spent one token is full again 0.1 s later
    for i in range(50):
        table.take(f"10.0.0.{i}", 0.0)
    assert len(table) == 50
    table.take("10.0.1.1", 0.05)  # not yet
    assert len(table) == 51
    table.take("10.0.1.2", 0.1)  # the first 50 refilled: forgotten
    assert len(table) == 2
    assert table.take("10.0.0.1", 0.1) == 0.0  # comes back full


def test_a_rate_table_holds_at_most_max_keys() -> None:
    table = RateTable(1.0, 1, max_keys=10)
    for i in range(1000):
        table.take(f"10.0.{i // 256}.{i % 256}", 0.0)
        assert len(table) <= 10
    assert len(table) == 10


def test_a_recently_used_key_outlives_older_ones_at_the_cap() -> None:
    table = RateTable(1.0, 1, max_keys=3)
    table.take("a", 0.0)
    table.take("b", 0.0)
    table.take("c", 0.0)
    assert table.take("a", 0.1) > 0  # a is touched again: now the most recent
    table.take("d", 0.2)  # evicts b, the least recently touched
    assert table.take("a", 0.2) > 0  # a still remembers its empty bucket
    assert table.take("b", 0.2) == 0.0  # b was forgotten: starts full


def test_memory_stays_bounded_under_a_spray_of_addresses() -> None:
    adm = _admission(max_tracked=64)
    now = 0.0
    for i in range(10_000):
        now += 0.0001
        addr = f"2001:db8:{i:x}::1"
        if adm.connect(addr, now) is None:
            adm.release(addr)
        adm.request(addr, now)
    assert adm.tracked() <= 2 * 64


@pytest.mark.parametrize("rate, burst", [(0.0, 1), (-1.0, 5), (1.0, 0)])
def test_bad_rates_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        RateTable(rate, burst)


def test_a_flooder_waits_out_its_penalty_and_is_remembered_until_then() -> None:
    a = _admission()
    assert a.connect("10.0.0.9", 0.0) is None
    a.release("10.0.0.9")
    a.penalize("10.0.0.9", 1.0, 10.0)
    refusal = a.connect("10.0.0.9", 5.0)
    assert refusal is not None and refusal.status == 429 and refusal.retry_after == 6
    for i in range(200):  # other addresses come and go: the penalized bucket is not forgotten early
        assert a.connect(f"10.1.{i // 250}.{i % 250}", 8.0 + i / 1000) is None
    assert a.connect("10.0.0.9", 10.5) is not None
    assert a.connect("10.0.0.9", 11.01) is None and a.connect("10.0.0.10", 11.01) is None


def test_refilled_buckets_are_forgotten_without_a_new_address() -> None:
    table = RateTable(10.0, 5, max_keys=100)
    for i in range(50):
        table.take(f"10.0.0.{i}", 0.0)
    table.forget_refilled(0.05)
    assert len(table) == 50  # not refilled yet
    table.forget_refilled(0.1)
    assert len(table) == 0  # after an attack, its addresses go by themselves


def test_a_penalized_address_is_not_forgotten_before_its_penalty_ends() -> None:
    adm = Admission(10, (10.0, 5), (1000.0, 1000), (10.0, 5))
    adm.penalize("10.0.0.1", 0.0, seconds=5.0)
    adm.forget_refilled(1.0)
    assert adm.connect("10.0.0.1", 1.0) is not None  # still refused
    adm.forget_refilled(6.0)
    assert adm.tracked() == 0
