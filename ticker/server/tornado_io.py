"""Every use of Tornado beyond its public API, in one place; and the direct write of pre-built frames.

Tornado's ``IOStream.write`` copies into its buffer and makes a Future per call. On the fan-out hot
path the same bytes go to thousands of streams, so while a stream's own buffer is empty the frame is
handed to ``socket.send`` directly; only what the kernel does not take goes through ``write``.

What this module relies on beyond the public API (tests/unit/test_tornado_io.py fails, naming the
Tornado version, if an upgrade changes any of it):

- ``IOStream._write_buffer._size``: the bytes accepted but not yet sent, and ``_write_buffer is None``
  once the stream is closed. The public ``IOStream.writing()`` only says *whether* bytes wait and costs
  two Python calls per write, which the hot path cannot afford; there is no public size.
- ``WebSocketHandler.ws_connection.stream`` and ``HTTP1Connection.stream`` (via ``request.connection``):
  the connection's ``IOStream``. ``RequestHandler.detach()`` is public but takes the response away
  from the handler, which the event stream still writes and finishes.
- ``RequestHandler._transforms``: the output transforms of one request, to drop gzip from an event
  stream. Tornado offers no per-handler switch (``Content-Encoding: identity`` would work, but
  RFC 9110 says not to send it).

The reason phrase of an error is read the public way (:func:`error_reason`), not from ``_reason``.
"""

from __future__ import annotations

import re
from typing import Any

import tornado
import tornado.http1connection
import tornado.httputil
import tornado.iostream
import tornado.web
import tornado.websocket

_PHRASE = re.compile(
    r"[\t\x20-\x7e\x80-\xff]+"
)  # reason-phrase (RFC 9112 §4); Tornado sends "Unknown" otherwise


def can_write_direct(stream: tornado.iostream.IOStream) -> bool:
    """Whether the direct path may be used: plain TCP streams only (TLS must go through Tornado)."""
    return type(stream) is tornado.iostream.IOStream


def write_frame(stream: tornado.iostream.IOStream, frame: bytes | memoryview, direct: bool) -> int:
    """Write ``frame``; return the bytes still unsent afterwards, or -1 if the stream is closed."""
    buf = stream._write_buffer
    if buf is None:
        return -1
    if direct and not buf._size and stream.socket is not None:
        try:
            sent = stream.socket.send(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = 0  # let Tornado meet the error below and close the stream its own way
        if sent == len(frame):
            return 0
        frame = frame[sent:]
    try:
        stream.write(frame)
    except tornado.iostream.StreamClosedError:
        return -1
    buf = stream._write_buffer
    return buf._size if buf is not None else -1


def buffered(stream: tornado.iostream.IOStream | None) -> int:
    """Bytes accepted by ``stream`` but not yet handed to the kernel (0 once closed)."""
    buf = stream._write_buffer if stream is not None else None
    return buf._size if buf is not None else 0


def websocket_stream(handler: tornado.websocket.WebSocketHandler) -> tornado.iostream.IOStream:
    """The stream under an open WebSocket (call it from ``open()``)."""
    stream = getattr(handler.ws_connection, "stream", None)
    if not isinstance(stream, tornado.iostream.IOStream):
        raise TypeError(f"no IOStream under this WebSocket (Tornado {tornado.version})")
    return stream


def request_stream(handler: tornado.web.RequestHandler) -> tornado.iostream.IOStream:
    """The stream under an HTTP/1.x request, which the handler keeps writing to through Tornado too."""
    conn = handler.request.connection
    if not isinstance(conn, tornado.http1connection.HTTP1Connection):
        raise TypeError(f"not an HTTP/1.x connection: {type(conn).__name__} (Tornado {tornado.version})")
    return conn.stream


def no_compression(handler: tornado.web.RequestHandler) -> None:
    """Turn gzip off for this response (call it in ``prepare``): compression holds events back."""
    handler._transforms = [
        t for t in handler._transforms if not isinstance(t, tornado.web.GZipContentEncoding)
    ]


def error_reason(status_code: int, kwargs: dict[str, Any]) -> str:
    """The reason phrase of an error response, from ``write_error``'s arguments, chosen as ``send_error`` does."""
    exc_info = kwargs.get("exc_info")
    exc = exc_info[1] if exc_info else None
    reason = exc.reason if isinstance(exc, tornado.web.HTTPError) and exc.reason else kwargs.get("reason")
    if not isinstance(reason, str):
        return tornado.httputil.responses.get(status_code, "Unknown")
    return reason if _PHRASE.fullmatch(reason) and "<" not in reason else "Unknown"
