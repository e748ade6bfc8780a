"""Why a provider could not be reached, or refused us, in words a person understands.

Every reason names the host and says what happened, not which exception class carried it:
``DNS lookup failed for stream.binance.com``, ``finnhub.io refused the connection``,
``ws.finnhub.io refused the credentials (HTTP 401; check FINNHUB_TOKEN)``. They become a feed's health
reason (``/readyz``, the ``status`` messages clients get) and log lines, so they never carry a URL
(tokens travel in some queries) or a secret.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Sequence

import aiohttp

#: errno values of a network that cannot get there, in words.
_UNREACHABLE = {
    errno.ENETUNREACH: "the network is unreachable",
    errno.EHOSTUNREACH: "no route to the host",
    errno.ENETDOWN: "the network is down",
    errno.EHOSTDOWN: "the host is down",
}


def check(credentials: Sequence[str]) -> str:
    """``"check FINNHUB_TOKEN"``, ``"check ALPACA_KEY_ID and ALPACA_SECRET_KEY"``; empty without names."""
    if not credentials:
        return ""
    names = list(credentials)
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"check {joined}"


def refused_credentials(host: str, status: int | None = None, credentials: Sequence[str] = ()) -> str:
    """``HOST refused the credentials (HTTP 401; check FINNHUB_TOKEN)``."""
    notes = [n for n in (f"HTTP {status}" if status else "", check(credentials)) if n]
    return f"{host} refused the credentials" + (f" ({'; '.join(notes)})" if notes else "")


def answered(host: str, status: int, credentials: Sequence[str] = ()) -> str:
    """What an unexpected HTTP status from ``host`` means (on a WebSocket upgrade, a poll, a list)."""
    if status in (401, 403):
        return refused_credentials(host, status, credentials)
    if status == 429:
        return f"{host} is limiting our requests (HTTP 429)"
    return f"{host} answered HTTP {status}"


def dns_failed(host: str) -> str:
    """``DNS lookup failed for HOST`` (a ``socket.gaierror``, whichever library carried it)."""
    return f"DNS lookup failed for {host}"


def _dns_cause(exc: BaseException) -> bool:
    """Whether a ``socket.gaierror`` caused ``exc`` (another library's wrapper of a failed lookup)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, socket.gaierror):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def timed_out(host: str, within: float | None = None) -> str:
    """``HOST did not answer within 10 s``."""
    return f"{host} did not answer within {within:g} s" if within else f"{host} did not answer in time"


def _tls(host: str, exc: BaseException) -> str:
    """``TLS handshake with HOST failed: certificate has expired`` (OpenSSL's words, made readable)."""
    detail = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
    if isinstance(detail, str) and detail:
        if detail.isupper():  # OpenSSL's reason codes: WRONG_VERSION_NUMBER
            detail = detail.replace("_", " ").lower()
    else:
        detail = str(getattr(exc, "strerror", None) or "") or type(exc).__name__
    return f"TLS handshake with {host} failed: {detail}"


def connection_failed(
    host: str, exc: BaseException, *, within: float | None = None, credentials: Sequence[str] = ()
) -> str:
    """Why connecting to ``host``, or talking to it, failed with ``exc`` (aiohttp's or the OS's error).

    ``within`` is the timeout that expired, if it is one; ``credentials`` names the variables to check
    when the host refuses them. A connector error names the host it tried itself (a cookie host, say)."""
    if isinstance(exc, aiohttp.ClientResponseError):  # a WebSocket upgrade answered with another status
        if isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status < 400:
            return f"{host} did not accept the WebSocket upgrade (HTTP {exc.status})"
        return answered(host, exc.status, credentials)
    if isinstance(exc, aiohttp.ClientConnectorError):
        host = exc.host or host
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return dns_failed(host)
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return _tls(host, exc.certificate_error)
        exc = exc.os_error
    if _dns_cause(exc):
        return dns_failed(host)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return _tls(host, exc)
    if isinstance(exc, TimeoutError):  # asyncio's, aiohttp's connect and read timeouts
        return timed_out(host, within)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{host} closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"the answer from {host} was cut off"
    code = getattr(exc, "errno", None)
    if isinstance(exc, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return f"{host} refused the connection"
    if isinstance(exc, ConnectionResetError) or code == errno.ECONNRESET:
        return f"{host} reset the connection"
    if code in _UNREACHABLE:
        return f"cannot reach {host}: {_UNREACHABLE[code]}"
    strerror = getattr(exc, "strerror", None)
    if isinstance(exc, OSError) and strerror:
        return f"cannot reach {host}: {strerror[0].lower()}{strerror[1:]}"
    return f"the connection to {host} failed ({type(exc).__name__})"
