"""Running ``ticker serve``: one process, or several sharing the port (``--workers``), with clean signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

import tornado.netutil

from ticker.config import Config
from ticker.server import Server

log = logging.getLogger("ticker")


async def _serve_async(config: Config, sockets: list[socket.socket] | None) -> None:
    server = Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start(sockets)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc.strerror or exc)
        raise SystemExit(1) from None
    await stop.wait()
    log.info("shutting down")
    await server.stop()


def serve(config: Config) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit status."""
    if config.workers <= 1:
        asyncio.run(_serve_async(config, None))
        return 0
    return _serve_workers(config)


def _serve_workers(config: Config) -> int:
    """Bind once with SO_REUSEPORT, fork ``config.workers`` servers, forward signals, reap them."""
    sockets = tornado.netutil.bind_sockets(config.port, config.host, reuse_port=True)
    port = sockets[0].getsockname()[1]
    children: dict[int, int] = {}
    for i in range(config.workers):
        pid = os.fork()
        if pid == 0:  # child: its own event loop, its own feeds (or a broker)
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            try:
                asyncio.run(_serve_async(config, sockets))
                code = 0
            except SystemExit as exc:
                code = int(exc.code or 0)
            except BaseException:
                log.exception("worker %d failed", i)
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        children[pid] = i
    for s in sockets:
        s.close()
    log.info("ticker supervisor: %d workers on port %d", config.workers, port)

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    status = 0
    while children:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        if pid in children:
            del children[pid]
            rc = os.waitstatus_to_exitcode(code)
            if rc != 0:
                status = 1
                log.error("worker exited with status %d", rc)
    return status
