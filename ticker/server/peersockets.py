"""Open TCP connections per peer address, counted at accept; and the ones that have not sent a request yet.

Pure (no Tornado): the listener (:class:`~ticker.server.tornado_io.GuardedAccept`) asks :meth:`PeerSockets.admit`
with the TCP peer of each accepted socket, before any byte is read, and gives the slot back when the socket
closes. This bounds what one address can hold with sockets that never become a request (the per-address
limits of :mod:`ticker.server.admission` only see ``/ws`` and ``/sse``). Peers in ``--trusted-proxies`` are
not counted (a proxy carries many clients); an IPv6 peer counts by its /64, as in admission.

The table also keeps, oldest first, the connections whose first request's headers have not arrived: when the
listener reaches its descriptor watermark it closes the oldest of them rather than the newest connection,
provided it has been idle for :data:`IDLE_GRACE` (one just accepted may have its request waiting unread).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from ticker.server.admission import address_key
from ticker.server.peers import Network

#: The ``reason`` label of ``ticker_connections_refused_total{transport="tcp"}``: over ``--max-sockets-per-ip``.
IP_SOCKETS = "ip_sockets"
#: The ``transport`` label of those refusals: a TCP connection, refused before any byte is read.
TCP = "tcp"
#: The ``reason`` label of ``ticker_accept_errors_total``: at the descriptor watermark the oldest connection
#: without a request was closed to keep the new one (the listener does not pause).
RESERVE_IDLE = "reserve_idle"
#: Seconds a connection must have been idle since its accept before the watermark may close it for a new one.
IDLE_GRACE = 1.0
#: What an exempt peer (a trusted proxy) is counted under: nothing.
EXEMPT = ""

Conn = TypeVar("Conn", bound=Hashable)


def _nothing() -> None:
    return None


def socket_key(ip: str) -> str:
    """What a TCP peer counts as: an IPv4 address itself (also when IPv4-mapped), an IPv6 address its /64."""
    if ":" not in ip:
        return ip
    if ip.startswith("::ffff:") and "." in ip:
        return ip[7:]
    return address_key(ip)


def default_cap(max_connections_per_ip: int) -> int:
    """``--max-sockets-per-ip`` when not given: ``--max-connections-per-ip`` plus a tenth (at least 100) for
    REST keep-alive connections and requests under way."""
    return max_connections_per_ip + max(100, max_connections_per_ip // 10)


class PeerSockets(Generic[Conn]):
    """Open sockets per peer address (at most ``cap`` each) and the idle ones, oldest first.

    ``refused()`` is called for each socket refused over the cap (the metric).
    """

    __slots__ = ("_idle", "_open", "cap", "grace", "refused", "trusted")

    def __init__(
        self,
        cap: int,
        trusted: tuple[Network, ...] = (),
        refused: Callable[[], None] = _nothing,
        grace: float = IDLE_GRACE,
    ) -> None:
        if cap < 1:
            raise ValueError("a socket cap needs to be at least 1")
        self.cap = cap
        self.trusted = trusted
        self.refused = refused
        self.grace = grace
        self._open: dict[str, int] = {}  # key -> open sockets (only keys with some)
        self._idle: OrderedDict[Conn, float] = (
            OrderedDict()
        )  # no request headers yet -> accepted at; oldest first

    def exempt(self, ip: str) -> bool:
        """Whether ``ip`` is in ``--trusted-proxies`` (not counted)."""
        if not self.trusted:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.trusted)

    def admit(self, ip: str) -> str | None:
        """Count a socket accepted from ``ip``: the key to :meth:`release` it under, or None (counted as
        refused) when the address holds ``cap`` already. A trusted proxy gets :data:`EXEMPT`."""
        if not ip or (self.trusted and self.exempt(ip)):
            return EXEMPT
        key = socket_key(ip)
        n = self._open.get(key, 0)
        if n >= self.cap:
            self.refused()
            return None
        self._open[key] = n + 1
        return key

    def release(self, key: str) -> None:
        """A socket admitted under ``key`` closed."""
        if not key:  # EXEMPT
            return
        n = self._open.get(key, 0) - 1
        if n > 0:
            self._open[key] = n
        else:
            self._open.pop(key, None)

    def opened(self, conn: Conn, now: float) -> None:
        """``conn`` was admitted at ``now`` (monotonic seconds) and is served: idle until :meth:`requested`."""
        self._idle[conn] = now

    def requested(self, conn: Conn) -> None:
        """``conn``'s first request headers are in: no longer idle."""
        self._idle.pop(conn, None)

    def is_idle(self, conn: Conn) -> bool:
        """Whether ``conn`` has not completed a request's headers yet."""
        return conn in self._idle

    def closed(self, conn: Conn, key: str) -> None:
        """``conn`` (admitted under ``key``) closed."""
        self._idle.pop(conn, None)
        self.release(key)

    def oldest_idle(self, now: float) -> Conn | None:
        """The idle connection accepted first, if it has been idle for ``grace`` seconds at ``now``; else None."""
        for conn, since in self._idle.items():
            return conn if now - since >= self.grace else None
        return None

    def idle(self) -> int:
        """Connections that have not completed a request's headers yet."""
        return len(self._idle)

    def open_from(self, ip: str) -> int:
        """Open sockets counted for ``ip`` (its /64 for IPv6)."""
        return self._open.get(socket_key(ip), 0)

    def tracked(self) -> int:
        """Addresses held in memory (those with open sockets)."""
        return len(self._open)
