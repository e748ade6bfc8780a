"""The descriptor budget against a real server under a low ``ulimit -n`` (docs/operations.md, "File descriptors").

The server raises its soft limit to the hard one, lowers ``--max-connections`` to what fits beside the
reserve (one warning), refuses WebSockets above that with 503, and when connections pile up past its
descriptors it pauses accepting instead of spinning: low CPU, at most about one log line a second,
``/healthz`` still answering, every pause counted; once the clients go it accepts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import re
import resource
import selectors
import socket
import time
import urllib.request
from collections.abc import AsyncIterator

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.serverproc import ServerProcess, scrape_async
from tests.support.system import cpu_seconds, open_files_limit, open_idle_sockets
from tests.support.timing import eventually, timeout

HARD = 128
EFFECTIVE = 60  # 128 descriptors - (64 + 4 for the simulated feed) kept for everything else
FLOOD = 300  # raw connections that never send a byte: more than the process has descriptors
_OPS = re.compile(r"metrics on http://[^:]+:(\d+)/metrics")
PAUSE_LINE = "the listener: "


def _low_limit() -> None:
    """In the child: ``ulimit -Sn 64 -Hn 128`` (the server raises the soft limit itself)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, HARD))


class Ops:
    """The server's ``--metrics-port`` URL, read from its banner."""

    def __init__(self, srv: ServerProcess) -> None:
        m = _OPS.search(srv.output())
        assert m, srv.output()
        self.url = f"http://127.0.0.1:{m.group(1)}"


@pytest.fixture
async def low() -> AsyncIterator[ServerProcess]:
    """A server started with soft/hard RLIMIT_NOFILE 64/128 and an ops listener."""
    srv = ServerProcess(
        # a kept-alive test connection idles through the waits for pause lines: a header timeout above them
        [
            "--host",
            "127.0.0.1",
            "--loop",
            "asyncio",
            "--metrics-port",
            "0",
            "--sim-rate",
            "5",
            "--header-timeout",
            "60",
            "--max-connections",
            "60000",  # asked for: lowering it warns (the default is lowered quietly)
        ]
    )
    srv.preexec_fn = _low_limit
    await asyncio.to_thread(srv.start, 20.0)
    try:
        yield srv
    finally:
        await asyncio.to_thread(srv.stop)


def send_requests(port: int, socks: list[socket.socket], within: float) -> None:
    """Send each of ``socks`` a request as soon as it is connected (within ``within`` s): a connection that
    has sent one is not idle, so at the watermark the listener closes the newest connection and pauses
    (idle ones it would close instead: tests/e2e/test_peer_sockets.py)."""
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    deadline = time.monotonic() + timeout(within)
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_WRITE)
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(0.2):
                with contextlib.suppress(OSError):
                    key.fileobj.send(request)  # type: ignore[union-attr]
                sel.unregister(key.fileobj)


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    """GET ``path`` on a kept-alive connection."""
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, resp.read()


def fresh_get(url: str) -> int:
    """GET ``url`` on a new connection: its status, or 0 when it does not answer within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except OSError:
        return 0


def pauses(srv: ServerProcess, words: str = "") -> int:
    return sum(1 for line in srv.output().splitlines() if PAUSE_LINE in line and words in line)


async def assert_no_spin(srv: ServerProcess, since: float, pauses_before: int, words: str) -> None:
    """Over the time three more pause lines take: the server used under half a core; log lines stay ~1/s."""
    assert srv.proc is not None
    pid = srv.proc.pid
    n0, c0, t0 = pauses(srv, words), cpu_seconds(pid), time.monotonic()
    await eventually(lambda: pauses(srv, words) >= n0 + 3, 15, "three more pause lines")
    cpu, wall = cpu_seconds(pid) - c0, time.monotonic() - t0
    assert cpu < 0.5 * wall, f"{cpu:.2f} s of CPU in {wall:.2f} s: the accept loop spins"
    logged = pauses(srv) - pauses_before
    assert logged <= time.monotonic() - since + 2, f"{logged} pause lines in {time.monotonic() - since:.1f} s"
    assert "Traceback" not in srv.output() and "Exception in callback" not in srv.output()


async def test_a_low_limit_lowers_max_connections_and_a_flood_pauses_accepting_without_spinning(low, flood):
    srv, ops = low, Ops(low)
    assert srv.proc is not None
    assert open_files_limit(srv.proc.pid) == (HARD, HARD), "the soft limit was not raised to the hard one"
    warned = [line for line in srv.output().splitlines() if "does not fit" in line]
    assert len(warned) == 1 and "--max-connections 60000" in warned[0], srv.output()
    assert (
        f"serving at most {EFFECTIVE} connections" in warned[0] and f"in {HARD} file descriptors" in warned[0]
    )
    assert (await scrape_async(ops.url))["ticker_max_connections"] == EFFECTIVE

    # The effective limit is enforced the usual way: the next WebSocket gets 503.
    sockets = [await connect(srv.ws_url, open_timeout=timeout(5)) for _ in range(EFFECTIVE)]
    with pytest.raises(InvalidStatus) as refused:
        await connect(srv.ws_url, open_timeout=timeout(5))
    assert refused.value.response.status_code == 503
    for ws in sockets:
        await ws.close()

    kept = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout(5))
    assert (await asyncio.to_thread(get, kept, "/healthz"))[0] == 200
    before, since = pauses(srv), time.monotonic()
    open_idle_sockets(srv.port, FLOOD, flood)
    await asyncio.to_thread(send_requests, srv.port, flood, 5)
    await eventually(lambda: pauses(srv) > before, 10, "a pause line")
    await assert_no_spin(srv, since, before, "only the last 16 file descriptors")

    assert await asyncio.to_thread(fresh_get, ops.url + "/healthz") == 200, "the ops listener does not answer"
    assert (await asyncio.to_thread(get, kept, "/healthz"))[0] == 200, "a kept connection does not answer"
    counted = (await scrape_async(ops.url))['ticker_accept_errors_total{reason="reserve"}']
    assert counted >= pauses(srv) - before

    for s in flood:
        s.close()
    await eventually(lambda: asyncio.to_thread(fresh_get, srv.url + "/healthz"), 15, "new connections again")
    async with connect(srv.ws_url, open_timeout=timeout(5)) as ws:
        assert ws.state is websockets.protocol.State.OPEN
    kept.close()


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="prlimit(2) is Linux only")
async def test_emfile_from_accept_pauses_counts_and_recovers(low, flood):
    """The limit lowered under a running server (prlimit): accept() meets EMFILE itself."""
    srv, ops = low, Ops(low)
    assert srv.proc is not None
    kept = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout(5))
    assert (await asyncio.to_thread(get, kept, "/healthz"))[0] == 200
    resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE, (48, HARD))

    before, since = pauses(srv), time.monotonic()
    open_idle_sockets(srv.port, FLOOD, flood)
    await eventually(lambda: pauses(srv, "no file descriptor left") > 0, 10, "an EMFILE pause line")
    await assert_no_spin(srv, since, before, "no file descriptor left")

    status, body = await asyncio.to_thread(get, kept, "/healthz")
    assert status == 200, body
    status, body = await asyncio.to_thread(get, kept, "/metrics")
    counted = re.search(rb'^ticker_accept_errors_total\{reason="emfile"\} (\S+)$', body, re.M)
    assert counted and float(counted.group(1)) >= 3, body[-2000:]

    for s in flood:
        s.close()
    await eventually(lambda: asyncio.to_thread(fresh_get, srv.url + "/healthz"), 15, "new connections again")
    assert await asyncio.to_thread(fresh_get, ops.url + "/healthz") == 200
    kept.close()
