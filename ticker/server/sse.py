"""The Server-Sent Events transport: ``GET /sse?symbols=A,B`` as one more fan-out connection.

The stream opens with ``retry:`` (the reconnect delay hint), ``id:`` (the epoch of the source
that numbers ``q``, the snapshot's ``e``) and a ``snapshot`` event; then ``quotes`` events carry the same JSON payloads as
the WebSocket ``quotes`` frames, and ``: hb`` comments keep idle connections alive. Quote
events are built once per batch by the fan-out, already wrapped as an HTTP/1.1 chunk, and
written as the same bytes to every SSE connection, straight to the socket while its buffer
is empty — the same path, limits, conflation and slow-consumer close as WebSocket.

``/sse?bars=AAPL:1m,MSFT:5m`` (alone or beside ``symbols=``) adds bar subscriptions: the stream waits
for their history, opens with a ``bars`` event per subscription after the snapshot, and then carries
the fan-out's ``bar`` events, the WebSocket payloads (and one more ``bars`` event per subscription when
its history arrives after that wait).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
import tornado.iostream
import tornado.web

from ticker import protocol
from ticker.bars import DEFAULT_LIMIT, MAX_LIMIT
from ticker.delay import delayed_key, symbol_of
from ticker.entitlements import Identity, Tier
from ticker.errors import (
    BAD_REQUEST,
    CLIENT,
    SHUTDOWN,
    SLOW_CONSUMER,
    TOKEN_EXPIRED,
    Disconnect,
    ForbiddenSymbols,
    ProtocolError,
    TooManySymbols,
    UnknownSymbols,
)
from ticker.frames import sse_event
from ticker.server import tornado_io
from ticker.server.access import Refused, count_failure, forbidden, identify, over_cap
from ticker.server.fanout import Connection
from ticker.server.gate import admit_connection
from ticker.session import (
    open_stream,
    query_bars,
    query_symbols,
    query_view,
    stream_keys,
    suggestions_of,
    symbol_limit,
    visible_to,
)
from ticker.views import spec_of

if TYPE_CHECKING:
    from ticker.server.node import Node

log = logging.getLogger("ticker.sse")

RETRY_MS = 2000  # the reconnect delay an EventSource is told to use


def chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk (RFC 9112 §7.1)."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


_TYPE_PREFIX = b'{"type":"'


_SNAPSHOT_PREFIX = b'{"type":"snapshot","e":"'  # protocol.encode_snapshot's


def quotes_frame(payload: bytes) -> bytes:
    """The fan-out's framer: one batch as an event named by its ``type`` (``quotes``, or ``snapshot`` on a
    resync), as a chunk shared by every SSE connection; a snapshot's event carries ``id:`` its epoch ``e``
    (a new epoch's snapshot moves EventSource's ``lastEventId`` on)."""
    if payload.startswith(_SNAPSHOT_PREFIX):
        start = len(_SNAPSHOT_PREFIX)
        epoch = payload[start : payload.index(b'"', start)]
        return chunk(b"id: " + epoch + b"\n" + sse_event("snapshot", payload))
    start = len(_TYPE_PREFIX)
    kind = payload[start : payload.index(b'"', start)] if payload.startswith(_TYPE_PREFIX) else b"quotes"
    return chunk(sse_event(kind.decode(), payload))


HEARTBEAT = chunk(b": hb\n\n")


def _unchunked(frame: bytes) -> memoryview:
    """The event inside a chunk, for HTTP/1.0 peers (no copy)."""
    return memoryview(frame)[frame.index(b"\r\n") + 2 : -2]


def _history(raw: str | None) -> int:
    """``?history=N``: bars each ``bars`` event holds (default 500, 0 to 5000)."""
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 5) or int(raw) > MAX_LIMIT:
        raise ProtocolError(BAD_REQUEST, f"history must be a whole number of bars from 0 to {MAX_LIMIT}")
    return int(raw)


def _bar_keys(pairs: list[tuple[str, str]], identity: Identity) -> list[str]:
    """The hub key of each bar subscription (a delayed symbol's delayed key); raises :class:`ForbiddenSymbols`."""
    ents = identity.entitlements
    no = [s for s, _ in pairs if ents.tier(s) is Tier.FORBIDDEN]
    if no:
        raise ForbiddenSymbols(list(dict.fromkeys(no)))
    return [delayed_key(s) if ents.tier(s) is Tier.DELAYED else s for s, _ in pairs]


def sse_route(server: Node) -> tuple[str, type[QuoteStream], dict[str, Any]]:
    """The ``/sse`` route of ``server``'s application."""
    return (r"/sse", QuoteStream, {"server": server})


class QuoteStream(tornado.web.RequestHandler, Connection):
    """One client on ``/sse``."""

    transport: ClassVar[str] = "sse"
    framer = staticmethod(quotes_frame)

    def initialize(self, server: Node) -> None:
        self.server = server
        self.registered = False
        self.disconnect: Disconnect = CLIENT  # why the stream ended (its metric label)
        self._sse_done: asyncio.Future[None] | None = None
        self._sse_beat = 0.0  # monotonic time of the last heartbeat
        self._sse_stream: tornado.iostream.IOStream | None = None
        self._sse_direct = False
        self._sse_chunked = True
        self._identity: Identity | None = None
        self._holds_slot = False
        self._delayed = False
        self._address: str | None = None  # the client address once admitted (a slot of its connections)

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        # An event stream must not be gzipped: compression would hold events back in its buffer.
        tornado_io.no_compression(self)

    def _refuse_json(self, status: int, exc: UnknownSymbols, suggestions: dict[str, list[str]]) -> None:
        """A refusal whose body names the symbols (``unknown_symbol``), with the "did you mean" suggestions."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        error: dict[str, Any] = {"code": exc.code, "message": exc.message, "symbols": exc.symbols}
        if suggestions:
            error["suggestions"] = suggestions
        self.finish(orjson.dumps({"error": error}))

    def _refuse(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.set_status(status)
        for name, value in (headers or {}).items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps({"error": {"code": code, "message": message}}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self._refuse(status_code, f"http_{status_code}", tornado_io.error_reason(status_code, kwargs))

    async def get(self) -> None:
        try:
            await self._serve()  # returns when the stream has ended
        finally:
            if self._address is not None:  # admitted: give its slot back
                self.server.admission.release(self._address)

    async def _serve(self) -> None:
        srv, cfg = self.server, self.server.config
        origin = self.request.headers.get("Origin")
        if origin is not None:
            if not cfg.host_policy.origin_allowed(origin, self.request):  # scheme, host and port
                log.info("refused origin %r for host %r", origin[:200], self.request.host)
                self._refuse(403, "forbidden_origin", "this origin may not open the event stream")
                return
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")
        try:  # shutting down or full (503), then the address's limits (429/503): all with Retry-After
            self._address = admit_connection(srv, self.request, self.transport)
            identity = await identify(srv, self.request, self.transport)
            assert identity is not None
            if self.request.connection is not None and tornado_io.request_stream(self).closed():
                return  # the client left while its token was checked (a JWKS refetch)
            refused = over_cap(srv, identity, self.transport)
            if refused is not None:
                raise refused
        except Refused as exc:
            self._refuse(exc.status, exc.code, exc.message, exc.headers)
            return
        try:
            limit = symbol_limit(cfg.max_symbols, identity.entitlements)
            symbols = query_symbols(self.get_query_argument("symbols", ""), limit, "connection")
            pairs = query_bars(self.get_query_argument("bars", ""), cfg.max_bar_subscriptions)
            if not symbols and not pairs:
                raise ProtocolError(
                    BAD_REQUEST,
                    "name the symbols or bars to stream: /sse?symbols=AAPL,MSFT or /sse?bars=AAPL:1m",
                )
            history = _history(self.get_query_argument("history", None))
            allow = visible_to(identity.entitlements) if srv.access.required else None
            unknown = srv.board.unknown(list(dict.fromkeys(symbols + [s for s, _ in pairs])), allow)
            if unknown is not None:
                raise unknown
            arg = self.get_query_argument
            rate, view = query_view(arg("max_hz", None), arg("fields", None), arg("delta", None))
            keys, delayed = stream_keys(symbols, identity.entitlements, rate, view, srv.access)
            bar_keys = _bar_keys(pairs, identity)
        except UnknownSymbols as exc:
            self._refuse_json(400, exc, suggestions_of(exc))
            return
        except ForbiddenSymbols as exc:
            ref = forbidden(srv, exc, self.transport)
            self._refuse(ref.status, ref.code, ref.message)
            return
        except ProtocolError as exc:
            self._refuse(400, exc.code, exc.message)
            return
        if srv.access.required:
            if not srv.access.slots.take(identity):  # another stream of this user got the last slot meanwhile
                ref = over_cap(srv, identity, self.transport) or Refused(
                    429, "user_limit", "too many connections"
                )
                self._refuse(ref.status, ref.code, ref.message)
                return
            self._identity, self._holds_slot = identity, True
        self._delayed = bool(delayed) or any(k != s for (s, _), k in zip(pairs, bar_keys, strict=True))
        # Their history, loaded side by side before the stream opens (what comes later: one more ``bars``).
        await srv.histories(s for s, _ in pairs)
        if self.request.connection is not None and tornado_io.request_stream(self).closed():
            self._end(CLIENT)  # gives back the user slot
            return
        if not self._open(
            symbols, keys, delayed, [(s, i, k, history) for (s, i), k in zip(pairs, bar_keys, strict=True)]
        ):
            return
        assert self._sse_done is not None
        await self._sse_done
        ended_cleanly = self.disconnect in (SHUTDOWN, TOKEN_EXPIRED)
        if ended_cleanly and self._sse_stream and not self._sse_stream.closed():
            await self.finish()  # the last chunk: a clean end of the stream
            self._sse_stream.close()

    def _open(
        self, symbols: list[str], keys: list[str], delayed: list[str], bars: list[tuple[str, str, str, int]]
    ) -> bool:
        """Register, subscribe and send ``subscribed``, the opening snapshot and the ``bars`` of each bar
        subscription (symbol, interval, key, history), which then goes live; False if the hub refused (400 sent)."""
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Connection", "close")
        self.set_header("X-Accel-Buffering", "no")  # tell nginx not to buffer the stream
        last = self.request.headers.get("Last-Event-ID")
        if last is not None:
            same = last == self.server.hub.epoch
            log.debug("event stream resumed (%s epoch)", "same" if same else "another")
        stream = tornado_io.request_stream(self)
        self._sse_stream = stream
        self._sse_direct = tornado_io.can_write_direct(stream)
        self._sse_chunked = self.request.version == "HTTP/1.1"
        self._sse_done = asyncio.get_running_loop().create_future()
        self.server.register(self)
        self.registered = True
        try:
            snapshot = open_stream(self.server.hub, self, keys, time.monotonic())
        except TooManySymbols as exc:  # the hub has the last word on its cap; nothing is written yet
            self._end(CLIENT)
            self._refuse(400, exc.code, exc.message)
            return False
        head = b"retry: %d\nid: %s\n" % (RETRY_MS, self.server.hub.epoch.encode())
        rates = {symbol_of(k): r for k in keys if (r := spec_of(k).rate) is not None}
        if self.server.access.required or rates:  # what the token grants (delayed symbols) and the rates
            head += sse_event("subscribed", protocol.subscribed(symbols, delayed, rates))
        tail = b""
        states = self.server.board.statuses(symbols)
        if states:
            tail = sse_event("status", protocol.status(states))
        bar_hub, book, wall_ms = self.server.bar_hub, self.server.bars, int(time.time() * 1000)
        for symbol, interval, key, n in bars:
            bar_hub.hold(self, symbol, interval, key, n)
            payload, since = bar_hub.opening(book, symbol, interval, key, n, wall_ms)
            tail += sse_event("bars", payload)
            bar_hub.start(self, symbol, interval, key, since)
        self.write(head + sse_event("snapshot", snapshot) + tail)
        self.flush()  # headers, snapshot and bars go out before any frame of the fan-out
        self._sse_beat = time.monotonic()
        return True

    # -- heartbeat ---------------------------------------------------------------------------
    def heartbeat(self, now: float) -> None:
        """A ``: hb`` comment every ``--ping-interval`` keeps proxies from closing an idle stream; the
        stream ends at the token's ``exp``."""
        ident = self._identity
        if ident is not None and self.registered and time.time() >= ident.exp + self.server.access.leeway:
            count_failure(self.server, self.transport, "expired")
            self._end(TOKEN_EXPIRED)
            return
        if (
            self.registered
            and not self.server.fanout.is_conflating(self)
            and now - self._sse_beat >= self.server.config.ping_interval
        ):
            self._sse_beat = now
            self.write_frame(HEARTBEAT)

    # -- fan-out side ------------------------------------------------------------------------
    def write_frame(self, frame: bytes) -> int:
        stream = self._sse_stream
        if stream is None:
            return -1
        data: bytes | memoryview = frame if self._sse_chunked else _unchunked(frame)
        return tornado_io.write_frame(stream, data, self._sse_direct)

    def buffered(self) -> int:
        return tornado_io.buffered(self._sse_stream)

    def receives_delayed(self) -> bool:
        return self._delayed

    def send_message(self, kind: str, payload: bytes) -> None:
        # Written even while conflated (rare and small: a state change, a refusal), as WebSocket replies are;
        # the unsent-bytes bound still closes a reader that never drains.
        if self.registered:
            self.server.fanout.replied(self, self.write_frame(chunk(sse_event(kind, payload))))

    def drop_symbols(self, symbols: list[str], refusal: ProtocolError) -> None:
        dropping = set(symbols)  # in either tier, with any options of the URL
        keys = [k for k in self.server.hub.symbols_of(self) if symbol_of(k) in dropping]
        self.server.hub.unsubscribe(self, keys)
        self.server.fanout.unsubscribed(self, keys)
        bar_hub, dropped = self.server.bar_hub, set(symbols)
        for symbol, interval in sorted(bar_hub.holds(self)):  # its bar subscriptions of them end too
            if symbol in dropped:
                bar_hub.drop(self, symbol, interval)
                self.send_message("bars_unsubscribed", protocol.bars_unsubscribed(symbol, interval))
        extra = suggestions_of(refusal) if isinstance(refusal, UnknownSymbols) else None
        self.send_message("error", protocol.error(refusal.code, refusal.message, symbols, extra))
        if not self.server.hub.symbols_of(self) and not self.server.bar_hub.holds(self):
            self._end(CLIENT)  # nothing left to stream: end it (the symbol set is the URL's)

    def close_slow(self) -> None:
        self._end(SLOW_CONSUMER)
        if self._sse_stream is not None:
            self._sse_stream.close()  # the buffer is over the bound: drop it, no polite end

    def abort(self) -> None:
        self._end(SHUTDOWN if self.server.closing else self.disconnect)
        if self._sse_stream is not None:
            self._sse_stream.close()

    def close_going_away(self) -> None:
        self._end(SHUTDOWN)

    def on_connection_close(self) -> None:
        self._end(self.disconnect)

    def _end(self, disconnect: Disconnect) -> None:
        if self._holds_slot and self._identity is not None:
            self._holds_slot = False
            self.server.access.slots.give_back(self._identity.sub)
        if self.registered:
            self.registered = False
            self.disconnect = disconnect
            self.server.unregister(self, disconnect.reason)
        if self._sse_done is not None and not self._sse_done.done():
            self._sse_done.set_result(None)
