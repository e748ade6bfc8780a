"""A TCP forwarder on loopback whose target can be switched, as a load balancer moving clients to another node:
:meth:`TcpSwitch.switch` points new connections at another port and cuts every open one (no close handshake)."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from tests.support.serverproc import ServerUrls


class TcpSwitch(ServerUrls):
    """Listens on ``127.0.0.1:port`` (an ephemeral port) and forwards each connection to ``127.0.0.1:target``
    (its ``url`` and ``ws_url`` are a server's, as a load balancer in front of it)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="tcpswitch", daemon=True).start()

    def switch(self, target: int) -> None:
        """New connections go to ``target`` from now on; the open ones are cut."""
        with self._lock:
            self.target = target
            cut, self._open = self._open, set()
        for s in cut:
            _close(s)

    def close(self) -> None:
        self._closed = True
        _close(self._listener)
        self.switch(self.target)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self.accepted += 1
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def __enter__(self) -> TcpSwitch:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until either ends; then end both."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    _close(src)
    _close(dst)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()
