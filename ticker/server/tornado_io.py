"""Writing pre-built frames to a Tornado ``IOStream``: straight to the socket when nothing is queued.

Tornado's ``IOStream.write`` copies into its buffer and makes a Future per call. On the fan-out hot
path the same bytes go to thousands of streams, so while a stream's own buffer is empty the frame is
handed to ``socket.send`` directly; only what the kernel does not take goes through ``write``. This
reads Tornado's private write buffer (``_write_buffer``, ``None`` once the stream is closed).
"""

from __future__ import annotations

import tornado.iostream


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
    """Bytes accepted by ``stream`` but not yet handed to the kernel."""
    buf = stream._write_buffer if stream is not None else None
    return buf._size if buf is not None else 0
