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
from typing import NoReturn

import tornado.netutil

from ticker.auth.options import KeyLoadError
from ticker.server import heap
from ticker.server.config import Config
from ticker.server.descriptors import size_to_descriptors
from ticker.server.logs import set_worker
from ticker.server.ops import LISTEN_BACKLOG, ListenError
from ticker.server.relaynode import relayed_node
from ticker.server.service import Service
from ticker.server.sharedmarket import SharedMarket
from ticker.server.supervision import end_with_parent, parent_gone, watch_parent

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


async def _serve_async(
    config: Config,
    sockets: list[socket.socket] | None,
    relay: str | None = None,
    supervisor: int | None = None,
    watch: bool = False,
) -> None:
    """Serve until SIGINT/SIGTERM; ``relay``: the feed process's socket (a --workers child's feeds run there);
    ``supervisor``: a worker's supervisor, watched when ``watch`` (the kernel cannot signal its death)."""
    if config.workers > 1:  # a --workers child: its log lines name it
        set_worker(config.worker_index)
    server = Service(config, relayed_node(config, relay) if relay is not None else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    orphaned = loop.create_task(watch_parent(supervisor, stop.set)) if watch and supervisor else None
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
    if orphaned is not None:
        orphaned.cancel()
    if supervisor is not None and parent_gone(supervisor):
        log.warning("the supervisor (pid %d) is gone: shutting down", supervisor)
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
    market: SharedMarket | None = None
    if config.broker == "memory" and config.feeds:  # one feed process for every worker (docs/scaling.md)
        try:
            market = SharedMarket(config)
        except OSError as exc:
            reserved.close()
            log.error("cannot make the feed process's socket: %s", exc.strerror or exc)
            return 1
    children: dict[int, int] = {}

    def forward(signum: int, _frame: object) -> None:
        if market is not None:  # stopping: a feed process that ends now (the same signal) is not restarted
            market.stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    # Block SIGINT/SIGTERM while forking: a signal that comes now is forwarded once every worker
    # exists, and each worker receives it only once its own handlers are in place.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    supervisor = os.getpid()
    status = 0
    try:
        for i in range(config.workers):
            pid = os.fork()
            if pid == 0:
                _worker(dataclasses.replace(config, worker_index=i), supervisor, reserved, market)
            children[pid] = i
        if market is not None:
            market.spawn()
    except OSError as exc:  # fork failed: the workers forked so far stop, the directory goes
        log.error("cannot fork: %s", exc.strerror or exc)
        forward(signal.SIGTERM, None)
        status = 1
    reserved.close()
    if not status:
        log.info("ticker supervisor: %d workers on port %d", config.workers, port)
    # A child's exit is taken with sigtimedwait (SIGCHLD blocked, so none is lost between two looks), at
    # least every second while the feed process's watchdog runs.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        while children:
            try:
                pid, code = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:  # none has exited: wait for one, or for the watchdog's next look
                if market is None:
                    signal.sigwaitinfo({signal.SIGCHLD})
                else:
                    signal.sigtimedwait({signal.SIGCHLD}, market.watch())
                continue
            if market is not None and market.reaped(pid, code):  # the feed process: forked again
                continue
            if pid in children:
                del children[pid]
                rc = os.waitstatus_to_exitcode(code)
                if rc != 0:
                    status = 1
                    log.error("worker exited with status %d", rc)
    finally:
        if market is not None:
            market.stop()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    return status


def _worker(
    config: Config, supervisor: int, reserved: socket.socket, market: SharedMarket | None
) -> NoReturn:
    """A forked worker's life (its own event loop, its own feeds or the feed process's relay, or a broker), to
    its ``os._exit``; its stop signals stay blocked until its handlers are in place."""
    code = 1
    try:
        heap.after_fork()
        # SIGTERM when the supervisor dies (killed outright): no orphan keeps the port
        watch = not end_with_parent(supervisor)
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        reserved.close()
        if market is not None:
            market.in_worker()
        sockets = tornado.netutil.bind_sockets(
            config.port, config.host, reuse_port=True, backlog=LISTEN_BACKLOG
        )
        relay = market.path if market is not None else None
        asyncio.run(_serve_async(config, sockets, relay, supervisor, watch))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    except BaseException:
        log.exception("worker %d failed", config.worker_index)
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
