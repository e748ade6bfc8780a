"""No route takes a request body: a request with one, or with a method that carries one, is refused at once.

Tornado reads a whole body (up to ``max_body_size``, for up to ``--body-timeout``) before any handler
sees the request, so a client could hold a connection open by trickling a body no route wants.
:class:`BodyRefusal` sits between the ``HTTPServer`` and the application and answers such a request as soon
as its headers announce a body (``Content-Length`` above 0 or any ``Transfer-Encoding``): 405 with a method
other than GET, HEAD or OPTIONS, else 413; then closes the connection without reading the body.

The ``Host`` check comes first (:mod:`ticker.server.hosts`): a request naming a host the application's
policy does not allow gets 421 here too, body or not, on every path but ``/healthz``, and its connection is
closed. Each refusal is counted and logged, sampled (:class:`~ticker.server.refusals.RequestRefusals`).
Only Tornado's public delegate interfaces are used.
"""

from __future__ import annotations

from collections.abc import Awaitable

import orjson
import tornado.httputil

from ticker.server.hosts import EXEMPT_PATHS, MISDIRECTED, HostPolicy
from ticker.server.refusals import BODY, HOST, RequestRefusals

#: The methods the routes answer; none of them takes a body.
METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOW = "GET, HEAD, OPTIONS"
MISDIRECTED_BODY = orjson.dumps(MISDIRECTED)


def refusal(
    start_line: tornado.httputil.RequestStartLine, headers: tornado.httputil.HTTPHeaders
) -> int | None:
    """For a request announcing a body: 405 with a method no route takes, else 413. None for a request without
    one, which goes on (a bodiless POST gets the routes' own 405, with their CORS headers)."""
    if "Transfer-Encoding" not in headers and headers.get("Content-Length", "0").strip() in ("", "0"):
        return None
    return 405 if start_line.method not in METHODS else 413


def _body(status: int, method: str) -> bytes:
    if status == 405:
        message = f"method {method[:16]} is not allowed; the routes take {ALLOW}"
    else:
        message = "no route takes a request body"
    return orjson.dumps({"error": {"code": f"http_{status}", "message": message}})


def host_checked(policy: HostPolicy | None, start_line: tornado.httputil.RequestStartLine) -> bool:
    """Whether the ``Host`` of a request to this path must be checked: a policy that does not answer every
    host, and a path not exempt (``/healthz``)."""
    return (
        policy is not None and not policy.any_host and start_line.path.partition("?")[0] not in EXEMPT_PATHS
    )


class BodyRefusal(tornado.httputil.HTTPServerConnectionDelegate):
    """The ``HTTPServer``'s request callback: ``app``, with requests naming a host ``policy`` does not allow
    refused (421), then requests carrying a body refused before it is read (405/413); each told to ``refusals``.
    ``policy`` and ``refusals`` default to the application's attributes of those names
    (:class:`~ticker.server.app.HostCheckedApplication`)."""

    def __init__(
        self,
        app: tornado.httputil.HTTPServerConnectionDelegate,
        policy: HostPolicy | None = None,
        refusals: RequestRefusals | None = None,
    ) -> None:
        self.app = app
        self.policy: HostPolicy | None = policy if policy is not None else getattr(app, "policy", None)
        self.refusals: RequestRefusals | None = (
            refusals if refusals is not None else getattr(app, "refusals", None)
        )

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        return _Screen(self.app.start_request(server_conn, request_conn), request_conn, self)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


class _Screen(tornado.httputil.HTTPMessageDelegate):
    """One request: passed on to the application's delegate, unless its headers already refuse it."""

    def __init__(
        self,
        inner: tornado.httputil.HTTPMessageDelegate,
        conn: tornado.httputil.HTTPConnection,
        screen: BodyRefusal,
    ) -> None:
        self.inner = inner
        self.conn = conn
        self.screen = screen
        self.refused = False

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        assert isinstance(start_line, tornado.httputil.RequestStartLine)
        policy, request = self.screen.policy, None
        if host_checked(policy, start_line):
            assert policy is not None
            request = self._request(start_line, headers)
            if not policy.request_ok(request):
                self._refuse(HOST, 421, MISDIRECTED_BODY, request, tornado.httputil.HTTPHeaders())
                return None
        status = refusal(start_line, headers)
        if status is None:
            return self.inner.headers_received(start_line, headers)
        out = tornado.httputil.HTTPHeaders({"Allow": ALLOW} if status == 405 else {})
        request = request or self._request(start_line, headers)
        self._refuse(BODY, status, _body(status, start_line.method), request, out)
        return None

    def _request(
        self, start_line: tornado.httputil.RequestStartLine, headers: tornado.httputil.HTTPHeaders
    ) -> tornado.httputil.HTTPServerRequest:
        """The request as a handler would see it (its address and scheme), from the headers alone."""
        return tornado.httputil.HTTPServerRequest(
            connection=self.conn, start_line=start_line, headers=headers
        )

    def _refuse(
        self,
        reason: str,
        status: int,
        body: bytes,
        request: tornado.httputil.HTTPServerRequest,
        out: tornado.httputil.HTTPHeaders,
    ) -> None:
        """Answer ``status`` with the JSON ``body`` (none to a HEAD) and close the connection."""
        self.refused = True
        out["Content-Type"] = "application/json"
        out["Content-Length"] = str(len(body))
        out["Connection"] = "close"
        out["X-Content-Type-Options"] = "nosniff"
        out["Cache-Control"] = "no-store"
        payload = None if request.method == "HEAD" else body  # Tornado refuses a payload to a HEAD
        start = tornado.httputil.ResponseStartLine("HTTP/1.1", status, tornado.httputil.responses[status])
        self.conn.write_headers(start, out, payload)
        self.conn.finish()  # finished before the body was read: Tornado closes the connection once this is sent
        if self.screen.refusals is not None:
            self.screen.refusals.refused(reason, status, request)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return None if self.refused else self.inner.data_received(chunk)

    def finish(self) -> None:
        if not self.refused:
            self.inner.finish()

    def on_connection_close(self) -> None:
        if not self.refused:
            self.inner.on_connection_close()
