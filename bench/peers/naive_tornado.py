"""Peer 1: the naive Tornado pattern — loop over subscribers calling ``write_message`` per update.

Each update is encoded once (with orjson, to be generous) and then written with one
``write_message`` call per subscriber, as most tutorials show.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import tornado.web
import tornado.websocket

from bench.peers.common import make_feed, parse_args, parse_subscribe, raise_fd_limit, subscribed_message

SUBSCRIBERS: dict[str, set[NaiveQuoteSocket]] = {}
KNOWN: set[str] = set()


class NaiveQuoteSocket(tornado.websocket.WebSocketHandler):
    """One subscriber connection."""

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: str, **kwargs: str) -> None:
        self.symbols: set[str] = set()

    def on_message(self, message: str | bytes) -> None:
        symbols = parse_subscribe(message, KNOWN)
        if symbols is None:
            self.write_message('{"type":"error","code":"bad_request","message":"unsupported"}')
            return
        for sym in symbols:
            self.symbols.add(sym)
            SUBSCRIBERS.setdefault(sym, set()).add(self)
        self.write_message(subscribed_message(self.symbols))

    def on_close(self) -> None:
        for sym in getattr(self, "symbols", ()):
            SUBSCRIBERS.get(sym, set()).discard(self)


def on_update(symbol: str, message: bytes) -> None:
    """Send one update to every subscriber of ``symbol``, one ``write_message`` each."""
    text = message.decode()
    for handler in list(SUBSCRIBERS.get(symbol, ())):
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            handler.write_message(text)


async def main() -> None:
    args = parse_args(__doc__ or "")
    raise_fd_limit()
    feed, ctx = make_feed(args, on_update)
    KNOWN.update(feed.known_symbols())
    app = tornado.web.Application([(r"/ws", NaiveQuoteSocket)])
    app.listen(args.port, args.host)
    await feed.start(ctx)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await feed.stop()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
