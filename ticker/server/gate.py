"""The HTTP side of admission (:mod:`ticker.server.admission`): the client address of a request, its
per-address and process-wide limits asked, refusals counted in ``ticker_connections_refused_total`` and
raised as :class:`~ticker.server.access.Refused` with ``Retry-After``; so are the 503s of a node that is
full (``--max-connections``) or shutting down, whose ``Retry-After`` has a random share so that clients
turned away together do not all come back together."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import tornado.httputil

from ticker.server.access import Refused
from ticker.server.admission import UNAVAILABLE, Refusal
from ticker.server.peers import client_address

if TYPE_CHECKING:
    from ticker.server.node import Node

MAX_CONNECTIONS = "max_connections"  # reason: the node holds --max-connections
#: ``Retry-After`` of the --max-connections 503: 5 s plus a random 0-5 s (a slot frees when someone leaves).
FULL_RETRY = (5, 5)
#: ``Retry-After`` of the shutting-down 503: 1 s plus a random 0-2 s (a restart, or another node, takes over).
CLOSING_RETRY = (1, 2)


def spread(retry: tuple[int, int], draw: Callable[[int, int], int] = random.randint) -> int:
    """Whole seconds for ``Retry-After``: ``retry``'s base plus ``draw(0, share)`` (uniform by default)."""
    base, share = retry
    return base + draw(0, share)


def refuse_unavailable(node: Node, transport: str) -> None:
    """Raise :class:`Refused` (503 ``unavailable``, ``Retry-After``) when ``node`` is shutting down or holds
    ``--max-connections`` connections (counted as ``max_connections``)."""
    if node.closing:
        s = spread(CLOSING_RETRY)
        raise Refused(503, UNAVAILABLE, f"server shutting down; retry after {s} s", {"Retry-After": str(s)})
    if node.connection_count() >= node.config.max_connections:
        count_full(node, transport)
        s = spread(FULL_RETRY)
        message = f"too many connections on this server; retry after {s} s"
        raise Refused(503, UNAVAILABLE, message, {"Retry-After": str(s)})


def _refused(node: Node, transport: str, refusal: Refusal) -> Refused:
    node.metrics.connections_refused.labels(transport, refusal.reason).inc()
    return Refused(refusal.status, refusal.code, refusal.message, refusal.headers)


def admit_connection(node: Node, request: tornado.httputil.HTTPServerRequest, transport: str) -> str:
    """Take a connection slot of the request's client address and return the address (give it back with
    ``node.admission.release``); raises :class:`Refused` (429 or 503, ``Retry-After``) over a limit, or
    (503) when the node is shutting down or full (:func:`refuse_unavailable`, checked first)."""
    refuse_unavailable(node, transport)
    address = client_address(request, node.config.trusted_proxies)
    refusal = node.admission.connect(address, time.monotonic())
    if refusal is not None:
        raise _refused(node, transport, refusal)
    return address


def admit_request(node: Node, request: tornado.httputil.HTTPServerRequest, transport: str) -> None:
    """Spend a request token of the client address; raises :class:`Refused` (429, ``Retry-After``) without one."""
    address = client_address(request, node.config.trusted_proxies)
    refusal = node.admission.request(address, time.monotonic())
    if refusal is not None:
        raise _refused(node, transport, refusal)


def count_full(node: Node, transport: str) -> None:
    """Count a connect refused because the node holds ``--max-connections``."""
    node.metrics.connections_refused.labels(transport, MAX_CONNECTIONS).inc()
