"""The supervisor's side of ``--workers N`` with the memory broker: one feed process for all the workers.

:class:`SharedMarket` makes a private directory (mode 0700) holding the relay's Unix socket, listens on it
(the supervisor keeps the listening socket, so a worker's connection waits in its backlog while the feed
process restarts), forks the feed process (:func:`~ticker.server.feedhost.run_feed_process`), forks it again
when it dies, after a backoff that starts over once it ran :data:`HEALTHY_AFTER` seconds, and stops it once
the workers are gone, removing the directory.

The feed process beats once a second from its event loop on a pipe (:func:`~ticker.server.supervision.heartbeat`);
:meth:`SharedMarket.watch` kills one silent for :data:`WATCHDOG` seconds (hung: stopped, deadlocked, its loop
blocked), which is then restarted like one that died. It gets SIGTERM when the supervisor dies, and then
removes the directory itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import NoReturn

from feeds.relaylink import SILENCE
from ticker.backoff import Backoff
from ticker.server import heap
from ticker.server.config import Config
from ticker.server.feedhost import run_feed_process
from ticker.server.supervision import end_with_parent, parent_gone

log = logging.getLogger("ticker")

SOCKET_NAME = "feed.sock"
BACKLOG = 128
HEALTHY_AFTER = 30.0  # seconds a feed process must have run for its restart backoff to start over
STOP_WAIT = 5.0  # seconds the feed process has to stop before SIGKILL
WATCHDOG = 2 * SILENCE  # seconds without a heartbeat after which the feed process is killed (hung)
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class SharedMarket:
    """The feed process of a ``--workers`` server and its socket; the supervisor calls :meth:`spawn` once,
    :meth:`in_worker` in each worker, :meth:`reaped` for every child that exits, :meth:`watch` at least every
    second (it says when next), :meth:`stop` at the end."""

    def __init__(self, config: Config) -> None:
        """Make the directory and listen on the socket (``OSError`` when that fails, with nothing left behind)."""
        self.config = config
        self.directory = tempfile.mkdtemp(prefix="ticker-")  # 0700: only this user reaches the socket
        self.path = os.path.join(self.directory, SOCKET_NAME)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.listener.bind(self.path)
            self.listener.listen(BACKLOG)
        except OSError:
            self.listener.close()
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.pid: int | None = None
        self.stopping = False
        self._started = 0.0
        self._backoff = Backoff(base=0.5, cap=30.0)
        self._beats: int | None = None  # the read end of the feed process's heartbeat pipe
        self._last_beat = 0.0
        self._retry_at: float | None = None  # a restart whose fork failed: tried again then

    def spawn(self, delay: float = 0.0) -> int:
        """Fork the feed process (it waits ``delay`` seconds before it starts its feeds); returns its pid."""
        supervisor = os.getpid()
        beats, beat = os.pipe()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)  # until its own handlers are in place
        try:
            pid = os.fork()
            if pid == 0:
                self._feed_process(supervisor, beats, beat, delay)
        except OSError:
            os.close(beats)
            os.close(beat)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(beat)
        os.set_blocking(beats, False)
        self._beats = beats
        self.pid = pid
        self._last_beat = time.monotonic()
        self._started = self._last_beat + delay
        log.info("ticker supervisor: feed process pid %d", pid)
        return pid

    def _feed_process(self, supervisor: int, beats: int, beat: int, delay: float) -> NoReturn:
        """The forked feed process's life, to its ``os._exit``."""
        code = 1
        try:
            heap.after_fork()
            end_with_parent(supervisor)  # SIGTERM (blocked until its handler is in place) if it dies
            os.close(beats)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})  # the supervisor's wait blocks it
            for sig in _STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            code = run_feed_process(self.config, self.listener, delay, beat)
        except SystemExit as exc:
            code = int(exc.code or 0)
        except BaseException:
            log.exception("the feed process failed")
        finally:
            with contextlib.suppress(BaseException):
                if parent_gone(supervisor):  # it was killed outright: nobody else removes the directory
                    shutil.rmtree(self.directory, ignore_errors=True)
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def in_worker(self) -> None:
        """In a freshly forked worker: its copy of the listening socket goes (it connects to the path)."""
        self.listener.close()

    def reaped(self, pid: int, status: int) -> bool:
        """Whether ``pid`` (with wait ``status``) was the feed process; if so, and the server is not stopping,
        it is forked again after a backoff."""
        if pid != self.pid:
            return False
        self.pid = None
        self._close_beats()
        if self.stopping:
            return True
        if time.monotonic() - self._started > HEALTHY_AFTER:
            self._backoff.reset()
        delay = self._backoff.next_delay()
        log.error("the feed process (pid %d) %s; restarting it in %.1f s", pid, _how_it_ended(status), delay)
        self._respawn(delay)
        return True

    def watch(self) -> float:
        """Take the feed process's heartbeats; kill it (SIGKILL: :meth:`reaped` restarts it) once it has been
        silent :data:`WATCHDOG` seconds; retry a restart whose fork failed. Returns the seconds until the
        next call is due."""
        now = time.monotonic()
        if self.pid is None:
            if self._retry_at is not None and now >= self._retry_at and not self.stopping:
                self._respawn(0.0)
            return 1.0
        if self._beats is not None:
            with contextlib.suppress(BlockingIOError):
                if os.read(self._beats, 4096):  # drained before judging: a supervisor stopped a while is fine
                    self._last_beat = now
        silent = now - self._last_beat
        if silent >= WATCHDOG and not self.stopping:
            log.error("the feed process (pid %d) sent no heartbeat for %.0f s: killing it", self.pid, silent)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._last_beat = now  # killed once; it is reaped next
            return 1.0
        return max(0.05, min(1.0, WATCHDOG - silent))

    def _respawn(self, delay: float) -> None:
        self._retry_at = None
        try:
            self.spawn(delay)
        except OSError as exc:
            retry = max(delay, self._backoff.next_delay())
            log.error("cannot fork the feed process (%s); trying again in %.1f s", exc.strerror or exc, retry)
            self._retry_at = time.monotonic() + retry

    def _close_beats(self) -> None:
        if self._beats is not None:
            os.close(self._beats)
            self._beats = None

    def stop(self) -> None:
        """Stop the feed process (SIGTERM, SIGKILL after :data:`STOP_WAIT` s), close the socket, remove the directory."""
        self.stopping = True
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_WAIT
            while time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == 0:
                        time.sleep(0.02)
                        continue
                break
            else:
                log.warning("the feed process did not stop within %g s: killed", STOP_WAIT)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            self.pid = None
        self._close_beats()
        self.listener.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def _how_it_ended(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"
