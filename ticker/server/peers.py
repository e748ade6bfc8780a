"""Who is asking: the client address behind trusted proxies, and the access log line that names it.

``X-Forwarded-For`` and ``X-Real-IP`` are read only when the TCP peer is in ``--trusted-proxies``:
anyone else could write any address into them. (Tornado's ``xheaders`` trusts every peer; it stays off.)
The access log never shows the value of an ``access_token`` (or ``token``) query parameter.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from feeds.ratelimit import ThrottledLog
from ticker.errors import OptionError

if TYPE_CHECKING:
    import tornado.httputil
    import tornado.web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

access_log = logging.getLogger("tornado.access")  # the logger and levels of Tornado's own access log

#: Query parameters whose values never reach a log (RFC 6750's ``access_token``, and ``token`` to be safe).
SECRET_PARAMS = frozenset({"access_token", "token"})
REDACTED = "***"


def trusted_networks(text: str) -> tuple[Network, ...]:
    """``--trusted-proxies``: comma-separated IPv4/IPv6 addresses or CIDRs; empty trusts no one."""
    nets = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise OptionError(f"not an IP address or CIDR: {part!r}") from None
    return tuple(nets)


def _address(text: str) -> Address | None:
    """An IP address (IPv4-mapped IPv6 as IPv4), or None for anything else."""
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _trusted(addr: Address, trusted: Iterable[Network]) -> bool:
    return any(addr in net for net in trusted)


def _forwarded_for(values: list[str], trusted: tuple[Network, ...]) -> Address | None:
    """The right-most address of the ``X-Forwarded-For`` chain not in ``trusted`` (the left-most if all
    are); None when the header is absent or any entry is not an address (then it is ignored as a whole).
    """
    chain = [_address(p) for v in values for p in v.split(",") if p.strip()]
    if not chain or None in chain:
        return None
    for addr in reversed(chain):
        assert addr is not None
        if not _trusted(addr, trusted):
            return addr
    return chain[0]


def client_address(request: tornado.httputil.HTTPServerRequest, trusted: tuple[Network, ...]) -> str:
    """The client's IP address: the TCP peer, unless the peer is in ``trusted``; then the right-most
    untrusted address of ``X-Forwarded-For``, else ``X-Real-IP``, else the peer. Bad headers are ignored.
    """
    peer_text = request.remote_ip or ""
    peer = _address(peer_text)
    if peer is None or not trusted or not _trusted(peer, trusted):
        return str(peer) if peer is not None else peer_text
    addr = _forwarded_for(request.headers.get_list("X-Forwarded-For"), trusted)
    if addr is None:
        real = request.headers.get_list("X-Real-IP")
        addr = _address(real[-1]) if len(real) == 1 else None
    return str(addr if addr is not None else peer)


def request_scheme(request: tornado.httputil.HTTPServerRequest, trusted: tuple[Network, ...]) -> str:
    """``http`` or ``https`` as the client used it: the connection's own, unless the peer is in ``trusted``
    and sends ``X-Forwarded-Proto`` (its right-most value, if that is ``http`` or ``https``)."""
    values = [p.strip().lower() for v in request.headers.get_list("X-Forwarded-Proto") for p in v.split(",")]
    if not trusted or not values or values[-1] not in ("http", "https"):
        return request.protocol
    peer = _address(request.remote_ip or "")
    return values[-1] if peer is not None and _trusted(peer, trusted) else request.protocol


def redact_uri(uri: str) -> str:
    """``uri`` with the value of every :data:`SECRET_PARAMS` query parameter replaced by ``***``.

    Names are compared as the server reads them (percent-decoded), so ``access%5Ftoken=`` is caught too.
    """
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    parts = query.split("&")
    for i, part in enumerate(parts):
        name, eq, _ = part.partition("=")
        if eq and unquote_plus(name).strip().lower() in SECRET_PARAMS:
            parts[i] = f"{name}={REDACTED}"
    return f"{path}?{'&'.join(parts)}"


_PARAM = re.compile(r"([?&])([^=&?#\s'\"()]+)=([^&#\s'\"()]*)")


def _redact_param(m: re.Match[str]) -> str:
    if unquote_plus(m.group(2)).strip().lower() in SECRET_PARAMS:
        return f"{m.group(1)}{m.group(2)}={REDACTED}"
    return m.group(0)


class RedactTokens(logging.Filter):
    """Redacts :data:`SECRET_PARAMS` values from any URI in a record's message (Tornado names the URI
    when it logs an uncaught exception or an ``HTTPError`` with a log message)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        redacted = _PARAM.sub(_redact_param, text)
        if redacted != text:
            record.msg, record.args = redacted, None
        return True


def redact_tornado_logs() -> None:
    """Put :class:`RedactTokens` on Tornado's application and general loggers (once)."""
    for name in ("tornado.application", "tornado.general"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


#: Paths whose successful answers the access log writes at DEBUG, not INFO (Prometheus scrapes).
QUIET_PATHS = frozenset({"/metrics"})

#: Seconds between two access log lines of the same error status (a client can cause errors at will).
ERROR_LINE_INTERVAL = 1.0


def access_logger(trusted: tuple[Network, ...]) -> Callable[[tornado.web.RequestHandler], None]:
    """The Application's ``log_function``: Tornado's access log line (status, method, URI, client,
    duration) with the client address resolved by :func:`client_address` and secrets redacted.

    Lines of 4xx and 5xx answers are sampled: at most one per status per :data:`ERROR_LINE_INTERVAL`,
    the next one saying how many were left out (``(N similar suppressed)``). Answered scrapes of
    :data:`QUIET_PATHS` (``/metrics``) are logged at DEBUG: a scrape every few seconds is not news.
    """
    errors = ThrottledLog(access_log, interval=ERROR_LINE_INTERVAL)

    def log_request(handler: tornado.web.RequestHandler) -> None:
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        if status < 400 and handler.request.path in QUIET_PATHS:
            level = logging.DEBUG
        if not access_log.isEnabledFor(level):
            return
        req = handler.request
        args = (
            status,
            req.method,
            redact_uri(req.uri or ""),
            client_address(req, trusted),
            1000.0 * req.request_time(),
        )
        if status < 400:
            access_log.log(level, "%d %s %s (%s) %.2fms", *args)
        else:
            errors.log(level, str(status), "%d %s %s (%s) %.2fms", *args)

    return log_request
