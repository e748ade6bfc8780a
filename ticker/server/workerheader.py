"""``X-Ticker-Worker``: which ``--workers`` worker answered, on every response of the public port.

The kernel spreads connections over the workers (``SO_REUSEPORT``); the header tells a test, or an operator
with ``curl -i``, which one served a request or holds a WebSocket or SSE stream (its index, as in the logs).
"""

from __future__ import annotations

from typing import Any

import tornado.httputil
import tornado.web

from ticker.server.logs import current_worker

HEADER = "X-Ticker-Worker"


class WorkerHeader(tornado.web.OutputTransform):
    """Adds :data:`HEADER` with this process's worker index to each response (none outside workers)."""

    def transform_first_chunk(
        self, status_code: int, headers: tornado.httputil.HTTPHeaders, chunk: bytes, finishing: bool
    ) -> tuple[int, tornado.httputil.HTTPHeaders, bytes]:
        worker: Any = current_worker()
        if isinstance(worker, int):
            headers[HEADER] = str(worker)
        return status_code, headers, chunk
