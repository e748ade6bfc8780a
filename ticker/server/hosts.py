"""Which hosts the server answers for, and which browser origins are its own (against DNS rebinding).

A page on a rebinding domain (``evil.example`` made to resolve to this machine) reaches the server with
``Host: evil.example`` and ``Origin: http://evil.example``. The server answers only for the hosts it is
named by (``--allowed-hosts``; 421 for any other, :mod:`ticker.server.app`), and a browser ``Origin`` is
its own only when scheme, host and port all match the request. No Tornado here: plain strings in, verdicts out.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ticker.errors import OptionError
from ticker.server.peers import Network, request_scheme

if TYPE_CHECKING:
    import tornado.httputil

ANY = "*"
DEFAULT_PORTS = {"http": 80, "https": 443}
#: What the default allows besides the listen address when that is a loopback address (or ``localhost``).
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: ``--host`` values that listen on every interface.
ALL_INTERFACES = frozenset({"", "0.0.0.0", "::", "[::]"})
#: Routes answered whatever the ``Host`` (liveness probes address a node by IP).
EXEMPT_PATHS = frozenset({"/healthz"})
HOST_NOT_ALLOWED = "host_not_allowed"
MISDIRECTED = {
    "error": {
        "code": HOST_NOT_ALLOWED,
        "message": "this server does not answer for the host in the Host header (see --allowed-hosts)",
    }
}

HostPort = tuple[str, int | None]

_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")


def split_host(text: str) -> HostPort | None:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` as (host in lower case, without brackets or a
    trailing dot; the port or None); None when ``text`` is not such a value (a bare IPv6 address is not)."""
    text = text.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1 :]
        if end < 0 or not _ipv6(host) or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:]
    else:
        host, _, port_text = text.partition(":")
        if host.endswith("."):
            host = host[:-1]
        if not _NAME.fullmatch(host) or ".." in host:
            return None
    if not port_text:  # "host:" is "host" (RFC 3986: an empty port is the scheme's default)
        return host, None
    if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        return None
    return host, int(port_text)


def _ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def _entry(text: str) -> HostPort | None:
    """One ``--allowed-hosts`` entry (a bare IPv6 address is taken as a host without a port)."""
    return (text.strip().lower(), None) if _ipv6(text.strip()) else split_host(text)


def show(entry: HostPort) -> str:
    """An entry as written in a ``Host`` header: ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    host, port = entry
    host = f"[{host}]" if ":" in host else host
    return host if port is None else f"{host}:{port}"


def allowed_hosts(text: str) -> frozenset[str]:
    """``--allowed-hosts``: comma-separated ``host`` or ``host:port`` (IPv6 in brackets), or ``*`` for any;
    normalized (lower case, brackets); :class:`OptionError` for anything else."""
    out = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part == ANY:
            out.add(ANY)
            continue
        entry = _entry(part)
        if entry is None:
            raise OptionError(f"not a host or host:port: {part!r}")
        out.add(show(entry))
    return frozenset(out)


def is_loopback(host: str) -> bool:
    """Whether a ``--host`` value is a loopback address or ``localhost``."""
    host = host.strip().lower().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """The hosts a server answers for and the origins it takes as its own; see :func:`host_policy`."""

    #: (host, port) pairs a ``Host`` may name; port None matches any port. Empty with :attr:`any_host`.
    hosts: frozenset[HostPort]
    #: Any ``Host`` is answered (``--allowed-hosts '*'``, or bound to every interface without the flag).
    any_host: bool
    #: ``--allowed-origins``, normalized (lower case, no trailing slash); ``*`` allows every origin.
    origins: frozenset[str] = frozenset()
    #: ``--trusted-proxies``: only these may say the client used https (``X-Forwarded-Proto``).
    trusted: tuple[Network, ...] = ()

    def _listed(self, host: str, port: int | None, scheme: str) -> bool:
        port = port if port is not None else DEFAULT_PORTS.get(scheme)
        return (host, None) in self.hosts or (host, port) in self.hosts

    def host_ok(self, host: str | None, scheme: str = "http") -> bool:
        """Whether the server answers a request with this ``Host`` header value (None or empty: no header,
        which no browser sends, so it is answered) under ``scheme``, which gives a port-less ``Host`` its port."""
        if self.any_host or not host:
            return True
        parsed = split_host(host)
        return parsed is not None and self._listed(*parsed, scheme)

    def origin_ok(self, origin: str, host: str | None, scheme: str = "http") -> bool:
        """Whether a browser ``Origin`` may use this server: listed in ``--allowed-origins``, or the same
        origin as the request: the request's ``scheme``, its host (or another allowed host; the request's
        must be allowed too) and its port (default ports filled in). ``null``, other schemes and any path or
        user part are refused."""
        normalized = origin.strip().lower().rstrip("/")
        if ANY in self.origins or normalized in self.origins:
            return True
        o_scheme, sep, netloc = normalized.partition("://")
        if not sep or o_scheme != scheme or scheme not in DEFAULT_PORTS:  # split_host refuses any path
            return False
        theirs, ours = split_host(netloc), split_host(host or "")
        if theirs is None or ours is None or not self.host_ok(host, scheme):
            return False
        default = DEFAULT_PORTS[scheme]
        port = theirs[1] or default
        if port != (ours[1] or default):
            return False
        return theirs[0] == ours[0] or (not self.any_host and self._listed(theirs[0], port, scheme))

    # -- on a Tornado request ----------------------------------------------------------------------
    def request_ok(self, request: tornado.httputil.HTTPServerRequest) -> bool:
        """:meth:`host_ok` for ``request`` (its scheme as :func:`~ticker.server.peers.request_scheme` says)."""
        if self.any_host:
            return True
        return self.host_ok(request.headers.get("Host"), request_scheme(request, self.trusted))

    def origin_allowed(self, origin: str, request: tornado.httputil.HTTPServerRequest) -> bool:
        """:meth:`origin_ok` for a browser ``origin`` on ``request``."""
        return self.origin_ok(origin, request.headers.get("Host"), request_scheme(request, self.trusted))


def host_policy(
    listen: str,
    allowed: frozenset[str] = frozenset(),
    origins: frozenset[str] = frozenset(),
    trusted: tuple[Network, ...] = (),
) -> HostPolicy:
    """The policy of a server listening on ``listen`` (``--host``) with ``--allowed-hosts`` ``allowed``.

    ``allowed`` (its entries, nothing else) when given; ``*`` in it: any host. Without it: any host when
    bound to every interface (see :func:`all_interfaces_warning`), else the listen address on any port,
    plus ``localhost``, ``127.0.0.1`` and ``::1`` when that is a loopback address.
    """
    if ANY in allowed or (not allowed and listen.strip() in ALL_INTERFACES):
        return HostPolicy(frozenset(), True, origins, trusted)
    if allowed:
        entries = {e for e in map(_entry, allowed) if e is not None}
    else:
        own = _entry(listen)
        entries = {own if own is not None else (listen.strip().lower(), None)}
        if is_loopback(listen):
            entries |= {(name, None) for name in LOOPBACK_NAMES}
    return HostPolicy(frozenset(entries), False, origins, trusted)


def all_interfaces_warning(listen: str, allowed: frozenset[str]) -> str | None:
    """The warning a server bound to every interface without ``--allowed-hosts`` logs once at start."""
    if allowed or listen.strip() not in ALL_INTERFACES:
        return None
    return (
        f"listening on all interfaces ({listen or '*'}) without --allowed-hosts: requests naming any host are"
        " answered, so DNS rebinding is not blocked; set --allowed-hosts (TICKER_ALLOWED_HOSTS) to the names"
        " clients use, or to * to accept any host without this warning"
    )
