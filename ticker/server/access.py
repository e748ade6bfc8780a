"""Who is asking, at the HTTP edge: the bearer token of a request, checked before any data or upgrade.

A token comes in ``Authorization: Bearer <jwt>`` or, for EventSource and plain links, the query
parameter ``access_token`` (RFC 6750 §2.3; the access log redacts it). A WebSocket may instead send
``{"op":"auth"}`` first (:class:`~ticker.session.Session`). Refusals carry the HTTP answer the
contract names: 401 with ``WWW-Authenticate: Bearer`` (``error="invalid_token"`` for a bad token),
429 over the user's connection cap, 403 ``forbidden_symbol``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tornado.httputil

from ticker.entitlements import Identity
from ticker.errors import UNAUTHORIZED, AuthReason, ProtocolError, TokenRejected
from ticker.session import ANONYMOUS

if TYPE_CHECKING:
    from ticker.server.node import Node

ACCESS_TOKEN = "access_token"


class Refused(Exception):
    """An HTTP refusal: ``status``, the error ``code`` and ``message`` of the JSON body, extra ``headers``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    @property
    def body(self) -> dict[str, dict[str, str]]:
        """The JSON error body every endpoint uses."""
        return {"error": {"code": self.code, "message": self.message}}


def bearer_token(request: tornado.httputil.HTTPServerRequest) -> str | None:
    """The request's token: ``Authorization: Bearer``, else the ``access_token`` query parameter.

    Another scheme (``Basic``, which a browser attaches by itself behind a Basic-auth proxy) is no token.
    """
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() == "bearer":
            return token.strip()  # "Bearer" and nothing: an empty token, refused as invalid
    values = request.query_arguments.get(ACCESS_TOKEN)
    return values[-1].decode("latin-1") if values else None


def count_failure(node: Node, transport: str, reason: AuthReason) -> None:
    """Count one refusal in ``ticker_auth_failures_total``."""
    node.metrics.auth_failures.labels(transport, reason).inc()


async def identify(
    node: Node, request: tornado.httputil.HTTPServerRequest, transport: str, optional: bool = False
) -> Identity | None:
    """The identity behind ``request``: anonymous with ``--auth none``; else its verified token.

    Raises :class:`Refused` (401) for a bad token, or for none unless ``optional`` (a WebSocket
    may still send ``auth``: then None).
    """
    if not node.access.required:
        return ANONYMOUS
    token = bearer_token(request)
    if token is None:
        if optional:
            return None
        count_failure(node, transport, "missing")
        raise Refused(
            401,
            UNAUTHORIZED,
            "a token is required: Authorization: Bearer <jwt>",
            {"WWW-Authenticate": 'Bearer realm="ticker"'},
        )
    verifier = node.verifier
    try:
        if verifier is None:  # not loaded yet: the service loads it before it listens
            raise TokenRejected("invalid", "tokens cannot be checked yet")
        return await verifier.verify(token)
    except TokenRejected as exc:
        count_failure(node, transport, exc.reason)
        text = exc.message.replace('"', "'")
        challenge = f'Bearer realm="ticker", error="invalid_token", error_description="{text}"'
        raise Refused(401, UNAUTHORIZED, exc.message, {"WWW-Authenticate": challenge}) from None


def over_cap(node: Node, identity: Identity, transport: str) -> Refused | None:
    """A 429 when ``identity`` already holds its cap of connections on this node, else None."""
    if node.access.required and node.access.slots.full(identity):
        count_failure(node, transport, "user_limit")
        return Refused(429, "user_limit", "too many connections for this user")
    return None


def forbidden(node: Node, exc: ProtocolError, transport: str) -> Refused:
    """The 403 of a request naming symbols the user may not see."""
    count_failure(node, transport, "forbidden_symbol")
    return Refused(403, exc.code, exc.message)
