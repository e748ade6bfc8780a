"""The HTTP side of admission (:mod:`ticker.server.admission`): the client address of a request, its
per-address and process-wide limits asked, refusals counted in ``ticker_connections_refused_total`` and
raised as :class:`~ticker.server.access.Refused` with ``Retry-After``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import tornado.httputil

from ticker.server.access import Refused
from ticker.server.admission import Refusal
from ticker.server.peers import client_address

if TYPE_CHECKING:
    from ticker.server.node import Node

MAX_CONNECTIONS = "max_connections"  # reason: the node holds --max-connections


def _refused(node: Node, transport: str, refusal: Refusal) -> Refused:
    node.metrics.connections_refused.labels(transport, refusal.reason).inc()
    return Refused(refusal.status, refusal.code, refusal.message, refusal.headers)


def admit_connection(node: Node, request: tornado.httputil.HTTPServerRequest, transport: str) -> str:
    """Take a connection slot of the request's client address and return the address (give it back with
    ``node.admission.release``); raises :class:`Refused` (429 or 503, ``Retry-After``) over a limit."""
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
