"""Peer 2: the ``websockets`` library with ``websockets.broadcast()`` per update.

Each update is encoded once and handed to ``broadcast()`` with the symbol's subscribers,
the library's recommended way to send one message to many connections.
"""

from __future__ import annotations

import asyncio
import signal

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from bench.peers.common import make_feed, parse_args, parse_subscribe, raise_fd_limit, subscribed_message

SUBSCRIBERS: dict[str, set[ServerConnection]] = {}
KNOWN: set[str] = set()


async def handler(ws: ServerConnection) -> None:
    """Serve one connection: subscribe requests in, acknowledgements out."""
    mine: set[str] = set()
    try:
        async for message in ws:
            symbols = parse_subscribe(message, KNOWN)
            if symbols is None:
                await ws.send('{"type":"error","code":"bad_request","message":"unsupported"}')
                continue
            for sym in symbols:
                mine.add(sym)
                SUBSCRIBERS.setdefault(sym, set()).add(ws)
            await ws.send(subscribed_message(mine).decode())
    except ConnectionClosed:
        pass
    finally:
        for sym in mine:
            SUBSCRIBERS.get(sym, set()).discard(ws)


def on_update(symbol: str, message: bytes) -> None:
    """Broadcast one update (a text frame) to the symbol's subscribers."""
    subs = SUBSCRIBERS.get(symbol)
    if subs:
        broadcast(subs, message.decode())


async def main() -> None:
    args = parse_args(__doc__ or "")
    raise_fd_limit()
    feed, ctx = make_feed(args, on_update)
    KNOWN.update(feed.known_symbols())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(handler, args.host, args.port, compression=None, max_queue=None):
        await feed.start(ctx)
        await stop.wait()
        await feed.stop()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
