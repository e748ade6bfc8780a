"""Requests refused at their headers, before any route or body: 421 for a ``Host`` the server does not
answer for, 405/413 for a body no route takes (:mod:`ticker.server.bodies`).

Each is counted in ``ticker_requests_refused_total{reason}`` (``host``, ``body``; no per-address label)
and logged on Tornado's access logger at most once a second per reason, the next line saying how many
were left out (``(N similar suppressed)``), as the sampled 4xx access lines are (:mod:`ticker.server.peers`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from feeds.ratelimit import ThrottledLog
from ticker.server.peers import ERROR_LINE_INTERVAL, Network, access_log, client_address, redact_uri

if TYPE_CHECKING:
    import tornado.httputil

HOST: Final = "host"  # reason: 421, the Host header names a host not in --allowed-hosts
BODY: Final = "body"  # reason: 405/413, the headers announce a body and no route takes one
REASONS: Final = (HOST, BODY)

SHOWN = 100  # characters of a client's Host header or URI a log line shows at most


def _shown(text: str) -> str:
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."


class RequestRefusals:
    """Counts refused requests (``count(reason)``, the metric) and writes the sampled log lines."""

    def __init__(
        self,
        count: Callable[[str], None],
        trusted: tuple[Network, ...] = (),
        logger: logging.Logger = access_log,
        interval: float = ERROR_LINE_INTERVAL,
    ) -> None:
        self._count = count
        self._trusted = trusted
        self._logger = logger
        self._lines = ThrottledLog(logger, interval=interval)

    def refused(self, reason: str, status: int, request: tornado.httputil.HTTPServerRequest) -> None:
        """One ``request`` answered ``status`` for ``reason`` (:data:`HOST` or :data:`BODY`)."""
        self._count(reason)
        if not self._logger.isEnabledFor(logging.WARNING):
            return
        if reason == HOST:
            why = f"Host {_shown(request.headers.get('Host', ''))!r} is not allowed (see --allowed-hosts)"
        else:
            why = "its headers announce a body and no route takes one"
        self._lines.log(
            logging.WARNING,
            reason,
            "%d %s %s (%s) refused: %s",
            status,
            request.method,
            _shown(redact_uri(request.uri or "")),
            client_address(request, self._trusted),
            why,
        )
