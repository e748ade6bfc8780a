"""No route takes a request body: a request with one, or with a method that carries one, is refused at once.

Tornado reads a whole body (up to ``max_body_size``, for up to ``--body-timeout``) before any handler
sees the request, so a client could hold a connection open by trickling a body no route wants.
:class:`BodyRefusal` sits between the ``HTTPServer`` and the application and answers such a request as soon
as its headers announce a body (``Content-Length`` above 0 or any ``Transfer-Encoding``): 405 with a method
other than GET, HEAD or OPTIONS, else 413; then closes the connection without reading the body. Only Tornado's public delegate interfaces are used.
"""

from __future__ import annotations

from collections.abc import Awaitable

import orjson
import tornado.httputil

#: The methods the routes answer; none of them takes a body.
METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOW = "GET, HEAD, OPTIONS"


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


class BodyRefusal(tornado.httputil.HTTPServerConnectionDelegate):
    """The ``HTTPServer``'s request callback: ``app``, with requests carrying a body refused before it is read."""

    def __init__(self, app: tornado.httputil.HTTPServerConnectionDelegate) -> None:
        self.app = app

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        return _Screen(self.app.start_request(server_conn, request_conn), request_conn)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


class _Screen(tornado.httputil.HTTPMessageDelegate):
    """One request: passed on to the application's delegate, unless its headers already refuse it."""

    def __init__(
        self, inner: tornado.httputil.HTTPMessageDelegate, conn: tornado.httputil.HTTPConnection
    ) -> None:
        self.inner = inner
        self.conn = conn
        self.refused = False

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        assert isinstance(start_line, tornado.httputil.RequestStartLine)
        status = refusal(start_line, headers)
        if status is None:
            return self.inner.headers_received(start_line, headers)
        self.refused = True
        body = _body(status, start_line.method)
        out = tornado.httputil.HTTPHeaders(
            {"Content-Type": "application/json", "Content-Length": str(len(body)), "Connection": "close"}
        )
        if status == 405:
            out["Allow"] = ALLOW
        reason = tornado.httputil.responses[status]
        self.conn.write_headers(tornado.httputil.ResponseStartLine("HTTP/1.1", status, reason), out, body)
        self.conn.finish()  # finished before the body was read: Tornado closes the connection once this is sent
        return None

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return None if self.refused else self.inner.data_received(chunk)

    def finish(self) -> None:
        if not self.refused:
            self.inner.finish()

    def on_connection_close(self) -> None:
        if not self.refused:
            self.inner.on_connection_close()
