"""Running ``ticker serve``: one process, or several sharing the port (``--workers``), with clean signals."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import socket
import sys

import tornado.netutil

from ticker.auth.options import KeyLoadError
from ticker.server.config import Config
from ticker.server.descriptors import size_to_descriptors
from ticker.server.logs import set_worker
from ticker.server.ops import ListenError
from ticker.server.service import Service

log = logging.getLogger("ticker")
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _tune_gc() -> None:
    """Fewer, cheaper garbage collections for a long-running server.

    A flush makes thousands of short-lived tuples and lists; with the default threshold (700) a
    collection runs in the middle of nearly every flush, traverses them while the flush still holds
    them, and promotes them to older generations that are traversed again later. Freezing what
    start-up made keeps those objects out of every later collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def _serve_async(config: Config, sockets: list[socket.socket] | None) -> None:
    if config.workers > 1:  # a --workers child: its log lines name it
        set_worker(config.worker_index)
    server = Service(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # The command line loads the server, and a worker is forked, with these signals blocked: one sent
    # before this point waits for us.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        await server.start(sockets)
    except ListenError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None
    except KeyLoadError as exc:  # like a bad flag: one line, status 2
        sys.stderr.write(f"ticker: error: {exc}\n")
        raise SystemExit(2) from None
    _tune_gc()
    await stop.wait()
    log.info("shutting down")
    await server.stop()


def serve(config: Config) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit status."""
    # Raised here, before any fork: every worker inherits the limit, and a lowered limit warns once.
    default = {f.name: f.default for f in dataclasses.fields(config)}["max_connections"]
    budget = size_to_descriptors(config.max_connections, len(config.feeds), config.max_connections != default)
    config = dataclasses.replace(config, max_connections=budget.effective)
    if config.workers <= 1:
        asyncio.run(_serve_async(config, None))
        return 0
    if config.access.auth == "jwt":  # one line and status 2 from here, not one per worker
        try:
            asyncio.run(_check_keys(config))
        except KeyLoadError as exc:
            sys.stderr.write(f"ticker: error: {exc}\n")
            return 2
    return _serve_workers(config)


async def _check_keys(config: Config) -> None:
    """Load the token keys once (each worker loads its own later); :class:`KeyLoadError` if they do not load."""
    from ticker.auth.verifier import TokenVerifier

    await (await TokenVerifier.load(config.access)).close()


def _reserve_port(host: str, port: int) -> socket.socket:
    """A bound, not listening, SO_REUSEPORT socket: fixes the port (0 picks one) without taking connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _serve_workers(config: Config) -> int:
    """Fork ``config.workers`` servers, each listening on its own SO_REUSEPORT socket; forward signals, reap.

    Separate listening sockets let the kernel spread new connections evenly over the workers (one shared
    socket would hand most of them to whichever worker happens to be awake).
    """
    try:
        reserved = _reserve_port(config.host, config.port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc.strerror or exc)
        return 1
    port = reserved.getsockname()[1]
    config = dataclasses.replace(config, port=port)
    children: dict[int, int] = {}

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    # Block SIGINT/SIGTERM while forking: a signal that comes now is forwarded once every worker
    # exists, and each worker receives it only once its own handlers are in place.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for i in range(config.workers):
        pid = os.fork()
        if pid == 0:  # child: its own event loop, its own feeds (or a broker); signals stay blocked
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            reserved.close()
            try:
                sockets = tornado.netutil.bind_sockets(port, config.host, reuse_port=True)
                asyncio.run(_serve_async(dataclasses.replace(config, worker_index=i), sockets))
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
    reserved.close()
    log.info("ticker supervisor: %d workers on port %d", config.workers, port)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
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
