"""The per-peer socket table (ticker/server/peersockets.py): caps, keys, trusted proxies, idle order."""

from __future__ import annotations

import pytest

from ticker.server.peers import trusted_networks
from ticker.server.peersockets import EXEMPT, IDLE_GRACE, PeerSockets, default_cap, socket_key


def test_keys_ipv4_as_is_mapped_ipv4_as_ipv4_and_ipv6_by_its_64():
    assert socket_key("10.0.0.1") == "10.0.0.1"
    assert socket_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert socket_key("2001:db8:1:2::5") == socket_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert socket_key("2001:db8:1:3::5") != socket_key("2001:db8:1:2::5")


def test_the_default_cap_leaves_room_for_rest_keep_alives():
    assert default_cap(1000) == 1100
    assert default_cap(10) == 110
    assert default_cap(50_000) == 55_000


def test_an_address_is_capped_refusals_are_counted_and_a_close_gives_a_slot_back():
    refused: list[int] = []
    peers: PeerSockets[object] = PeerSockets(2, refused=lambda: refused.append(1))
    a, b = peers.admit("10.0.0.1"), peers.admit("10.0.0.1")
    assert a == b == "10.0.0.1"
    assert peers.admit("10.0.0.1") is None and len(refused) == 1
    assert peers.admit("10.0.0.2") == "10.0.0.2", "another address has its own count"
    assert peers.open_from("10.0.0.1") == 2
    conn = object()
    peers.opened(conn, 0.0)
    peers.closed(conn, "10.0.0.1")
    assert peers.open_from("10.0.0.1") == 1
    assert peers.admit("10.0.0.1") == "10.0.0.1"
    for key in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
        peers.release(key)
    assert peers.tracked() == 0, "addresses without open sockets are forgotten"


def test_an_ipv6_64_shares_one_cap():
    peers: PeerSockets[object] = PeerSockets(1)
    assert peers.admit("2001:db8::1") is not None
    assert peers.admit("2001:db8::2") is None
    assert peers.admit("2001:db8:0:1::1") is not None


def test_trusted_proxies_are_not_counted():
    peers: PeerSockets[object] = PeerSockets(1, trusted_networks("10.1.0.0/16,::1"))
    assert [peers.admit("10.1.2.3") for _ in range(5)] == [EXEMPT] * 5
    assert peers.admit("::1") == EXEMPT and peers.admit("::ffff:10.1.0.9") == EXEMPT
    assert peers.admit("10.2.0.1") == "10.2.0.1" and peers.admit("10.2.0.1") is None
    peers.release(EXEMPT)  # nothing to give back
    assert peers.tracked() == 1


def test_an_address_that_is_not_one_is_not_counted():
    peers: PeerSockets[object] = PeerSockets(1, trusted_networks("10.0.0.0/8"))
    assert peers.admit("") == EXEMPT
    assert peers.admit("not-an-ip") == "not-an-ip" and peers.admit("not-an-ip") is None


def test_the_oldest_idle_connection_is_the_first_accepted_that_sent_no_request():
    peers: PeerSockets[str] = PeerSockets(10, grace=0.0)
    assert peers.oldest_idle(0.0) is None
    for c in ("a", "b", "c"):
        peers.opened(c, 0.0)
    assert peers.oldest_idle(0.0) == "a" and peers.idle() == 3
    peers.requested("a")  # its headers are in: no longer a candidate
    assert not peers.is_idle("a") and peers.oldest_idle(0.0) == "b"
    peers.closed("b", "")
    assert peers.oldest_idle(0.0) == "c"
    peers.requested("c")
    assert peers.oldest_idle(0.0) is None and peers.idle() == 0


def test_a_connection_idle_for_less_than_the_grace_is_not_a_candidate():
    peers: PeerSockets[str] = PeerSockets(10)
    assert peers.grace == IDLE_GRACE == 1.0
    peers.opened("a", 100.0)
    peers.opened("b", 100.5)
    assert peers.oldest_idle(100.9) is None, "just accepted: its request may be waiting unread"
    assert peers.oldest_idle(101.0) == "a"
    peers.closed("a", "")
    assert peers.oldest_idle(101.2) is None and peers.oldest_idle(101.5) == "b"


def test_a_cap_below_one_is_refused():
    with pytest.raises(ValueError):
        PeerSockets(0)
