"""Refusals against real servers: a foreign ``Host`` gets 421 before any body is looked at, bodies no route
takes get 405/413; both counted in ``ticker_requests_refused_total{reason}`` and logged at most once a second
per reason; the 503s of a full (``--max-connections``) or shutting-down server carry ``Retry-After`` and the
JSON error body on ``/ws`` and ``/sse``."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.serverproc import ServerProcess, scrape, scrape_async, serving
from tests.support.timing import eventually, eventually_sync, timeout
from tests.support.wsclient import frames_until_close
from tests.support.wsframes import upgrade_request

EVIL = "evil.example"
HOST_LINE = re.compile(r"WARNING tornado\.access: 421 \S+ \S+ \(127\.0\.0\.1\) refused: Host '")
BODY_LINE = re.compile(
    r"WARNING tornado\.access: 4(05|13) \S+ \S+ \(127\.0\.0\.1\) refused: its headers announce"
)
SUPPRESSED = re.compile(r"\((\d+) similar suppressed\)$")


def refused_key(reason: str) -> str:
    return f'ticker_requests_refused_total{{reason="{reason}"}}'


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    """The default host policy (bound to 127.0.0.1: only the loopback names are answered)."""
    with ServerProcess(["--host", "127.0.0.1", "--loop", "asyncio", "--log-level", "warning"]) as proc:
        yield proc


Response = tuple[int, dict[str, str], bytes]


def _read_response(sock: socket.socket, head_only: bool = False) -> Response:
    """One response: status, headers (lower-case names), body (by Content-Length; none when ``head_only``)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    size = 0 if head_only else int(headers.get("content-length", "0"))
    while len(body) < size:
        chunk = sock.recv(65536)
        assert chunk, body
        body += chunk
    return int(lines[0].split(" ", 2)[1]), headers, body


def _exchange(port: int, request: bytes, head_only: bool = False) -> tuple[Response, bytes]:
    """Send ``request`` on a new connection; its response and whatever followed until the server closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(10)) as sock:
        sock.sendall(request)
        resp = _read_response(sock, head_only)
        rest = b""
        while chunk := sock.recv(65536):  # EOF: the server closes after a refusal
            rest += chunk
        return resp, rest


def _lines(proc: ServerProcess, pattern: re.Pattern[str]) -> list[str]:
    return [line.rstrip("\n") for line in list(proc.lines) if pattern.search(line)]


def _reported(lines: list[str]) -> int:
    """Refusals the sampled lines account for: each line, plus the ones it says were left out."""
    return sum(1 + (int(m.group(1)) if (m := SUPPRESSED.search(line)) else 0) for line in lines)


def _assert_sampled(
    proc: ServerProcess, pattern: re.Pattern[str], sent: int, since: float, send: Any
) -> None:
    """At most one line a second for ``sent`` refusals made since ``since``; then (sending one more every
    0.25 s) a line saying how many were left out, and the lines account for no more than were made."""
    elapsed = time.monotonic() - since
    assert 1 <= len(_lines(proc, pattern)) <= elapsed + 1, (elapsed, _lines(proc, pattern))

    def summed() -> bool:
        nonlocal sent
        send()
        sent += 1
        return any(SUPPRESSED.search(line) for line in _lines(proc, pattern))

    eventually_sync(summed, 10.0, "a sampled line with the count of the left-out ones", interval=0.25)
    lines = _lines(proc, pattern)
    assert _reported(lines) <= sent and _reported(lines) > len(lines), lines
    assert len(lines) <= time.monotonic() - since + 1, lines


def test_a_foreign_host_gets_421_before_its_body_counted_and_logged_sampled(srv: ServerProcess) -> None:
    before = scrape(srv.url)
    since = time.monotonic()
    host = f"{EVIL}:{srv.port}"
    # A POST announcing 100 kB, of which 10 bytes come: 421 at once (not 405), without waiting for the rest.
    post = f"POST /api/quotes HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100000\r\n\r\n0123456789".encode()
    (status, headers, body), rest = _exchange(srv.port, post)
    assert status == 421 and rest == b"", (status, body, rest)
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert orjson.loads(body)["error"]["code"] == "host_not_allowed" and "allow" not in headers
    # The same with a chunked body, a HEAD (no payload), and an upgrade.
    chunked = f"PUT /ws HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab".encode()
    assert _exchange(srv.port, chunked)[0][0] == 421
    head = f"HEAD / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\n".encode()
    (status, headers, _), rest = _exchange(srv.port, head, head_only=True)
    assert status == 421 and int(headers["content-length"]) > 0 and rest == b""
    (status, _, body), _ = _exchange(srv.port, upgrade_request(host, "/ws"))
    assert status == 421 and b'"code":"host_not_allowed"' in body
    # /healthz answers any host.
    healthz = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    assert _exchange(srv.port, healthz)[0][0] == 200
    get = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    for _ in range(30):
        assert _exchange(srv.port, get)[0][0] == 421
    metrics = scrape(srv.url)
    assert metrics[refused_key("host")] - before[refused_key("host")] == 34
    assert metrics[refused_key("body")] == before[refused_key("body")]
    _assert_sampled(srv, HOST_LINE, 34, since, lambda: _exchange(srv.port, get))
    # One line kind: no access line of its own for a refusal answered at the headers.
    assert not [ln for ln in srv.lines if " 421 " in ln and "refused:" not in ln], srv.output()[-2000:]
    assert "Traceback" not in srv.output() and "ERROR" not in srv.output(), srv.output()[-3000:]


def test_bodies_no_route_takes_are_refused_counted_and_logged_sampled(srv: ServerProcess) -> None:
    before = scrape(srv.url)
    since = time.monotonic()
    host = f"127.0.0.1:{srv.port}"
    post = (
        f"POST /api/quotes?access_token=SECRET HTTP/1.1\r\nHost: {host}\r\nContent-Length: 9\r\n\r\n".encode()
    )
    (status, headers, body), _ = _exchange(srv.port, post)
    assert status == 405 and headers["allow"] == "GET, HEAD, OPTIONS"
    assert orjson.loads(body)["error"]["code"] == "http_405"
    get = f"GET / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    assert _exchange(srv.port, get)[0][0] == 413
    head = f"HEAD / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\n".encode()
    (status, _, _), rest = _exchange(srv.port, head, head_only=True)
    assert status == 413 and rest == b""  # a HEAD's refusal has no payload (and no traceback)
    for _ in range(20):
        assert _exchange(srv.port, post)[0][0] == 405
    metrics = scrape(srv.url)
    assert metrics[refused_key("body")] - before[refused_key("body")] == 23
    assert metrics[refused_key("host")] == before[refused_key("host")]
    _assert_sampled(srv, BODY_LINE, 23, since, lambda: _exchange(srv.port, post))
    assert "SECRET" not in srv.output() and "Traceback" not in srv.output(), srv.output()[-3000:]


def _unavailable(status: int, retry: str | None, body: bytes, text: str, lo: int, hi: int) -> None:
    """A 503 ``unavailable`` whose message is ``text; retry after N s``, N the ``Retry-After`` in [lo, hi]."""
    assert status == 503 and retry is not None, (status, body)
    wait = int(retry)
    assert lo <= wait <= hi, wait
    assert orjson.loads(body) == {
        "error": {"code": "unavailable", "message": f"{text}; retry after {wait} s"}
    }


FULL = "too many connections on this server"


async def _ws_refused(url: str) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, open_timeout=timeout(5)):
            pass
    resp = info.value.response
    _unavailable(resp.status_code, resp.headers.get("Retry-After"), bytes(resp.body or b""), FULL, 5, 10)


async def _sse_refused(http: httpx.AsyncClient) -> None:
    resp = await http.get("/sse?symbols=AAPL")
    assert resp.headers["content-type"] == "application/json"
    _unavailable(resp.status_code, resp.headers.get("Retry-After"), resp.content, FULL, 5, 10)


async def test_a_full_server_answers_503_with_retry_after_and_a_json_body_on_ws_and_sse() -> None:
    async with serving("--max-connections", "1", "--log-level", "warning") as srv, AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=srv.url, timeout=timeout(5)))
        async with connect(srv.ws_url):  # the one connection: a WebSocket
            await _ws_refused(srv.ws_url)
            await _sse_refused(http)

        async def stream_opens() -> httpx.Response | None:  # once the WebSocket's slot is free
            cm = http.stream("GET", "/sse?symbols=AAPL")
            resp = await cm.__aenter__()
            if resp.status_code == 200:
                stack.push_async_exit(cm)
                return resp
            await cm.__aexit__(None, None, None)
            return None

        await eventually(stream_opens, 10.0, "an SSE stream once the WebSocket closed", interval=0.05)
        await _sse_refused(http)  # the one connection: an SSE stream
        await _ws_refused(srv.ws_url)
        metrics = await scrape_async(srv.url)
        for transport in ("ws", "sse"):
            key = f'ticker_connections_refused_total{{reason="max_connections",transport="{transport}"}}'
            assert metrics[key] >= 2, (transport, metrics.get(key))
        # the eventually() above may have been refused a few times too: only ws is exact
        assert metrics['ticker_connections_refused_total{reason="max_connections",transport="ws"}'] == 2


def test_a_server_shutting_down_answers_503_with_retry_after_on_ws_and_sse() -> None:
    with ServerProcess(["--host", "127.0.0.1", "--log-level", "warning"]) as srv:
        host = f"127.0.0.1:{srv.port}"
        ws = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout(10))
        ws.sendall(upgrade_request(host, "/ws"))
        assert _read_response(ws, head_only=True)[0] == 101
        idle = []  # keep-alive connections open before the listener closes
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout(10))
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert _read_response(sock)[0] == 200
            idle.append(sock)
        srv.signal(signal.SIGTERM)
        # The server is closing once it sends the 1001 Close; it waits up to 2 s for the answer, never sent.
        assert frames_until_close(ws)[1] == 1001
        idle[0].sendall(upgrade_request(host, "/ws"))
        status, headers, body = _read_response(idle[0])
        _unavailable(status, headers["retry-after"], body, "server shutting down", 1, 3)
        idle[1].sendall(f"GET /sse?symbols=AAPL HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        status, headers, body = _read_response(idle[1])
        _unavailable(status, headers["retry-after"], body, "server shutting down", 1, 3)
        for sock in (ws, *idle):
            sock.close()
        assert srv.wait(10) == 0, srv.output()[-2000:]
