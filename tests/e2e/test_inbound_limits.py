"""Issue 17 against real servers: control and continuation frame floods close 1008, unsolicited pongs keep
no dead peer alive, a NUL in a path is no 500, bodies are refused at once, slow headers time out, a secret
file that does not read is one line and status 2, and an empty recording is a failure."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest

from tests.support.serverproc import ServerProcess, run_cli, scrape_async
from tests.support.system import free_port
from tests.support.timing import eventually, timeout
from tests.support.wsclient import frames_until_close, open_raw_ws
from tests.support.wsframes import client_frame, upgrade_request


def _upgrade_head(port: int) -> bytes:
    """The response head to a /ws upgrade request."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(10)) as s:
        s.sendall(upgrade_request(f"127.0.0.1:{port}", "/ws"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        return head


def _flood(port: int, unit: bytes, opening: bytes = b"") -> int | None:
    """Send ``opening`` then ``unit`` 2,000 times as fast as the socket takes them; the close code."""
    with open_raw_ws(port) as s:
        with contextlib.suppress(OSError):  # the server may close before taking it all
            s.sendall(opening + unit * 2000)
        return frames_until_close(s)[1]


FLOODS = {
    "pings": (client_frame(0x9, b""), b""),
    "pongs": (client_frame(0xA, b""), b""),
    # a text message that never ends: one non-final frame, then empty non-final continuations
    "continuations": (bytes((0x00, 0x80)) + b"\0\0\0\0", bytes((0x01, 0x80)) + b"\0\0\0\0"),
}


@pytest.mark.parametrize("kind", sorted(FLOODS))
async def test_a_flood_of_control_or_continuation_frames_is_closed_1008(kind: str):
    unit, opening = FLOODS[kind]
    with ServerProcess(["--rate-limit", "50", "--rate-burst", "100", "--log-level", "warning"]) as srv:
        code = await asyncio.to_thread(_flood, srv.port, unit, opening)
        assert code == 1008
        key = 'ticker_connections_closed_total{reason="flood",transport="ws"}'

        async def counted() -> bool:
            return (await scrape_async(srv.url)).get(key, 0) >= 1

        await eventually(counted, 10.0, f"the {kind} flood's close to be counted as flood")
        # The flooder's address waits out its penalty before it connects again (the close also stopped
        # reading its frames: nothing it sends costs more after it).
        head = (await asyncio.to_thread(_upgrade_head, srv.port)).decode("latin-1").lower()
        assert head.startswith("http/1.1 429"), head
        wait = int(head.split("retry-after:")[1].split("\r\n")[0])
        assert 1 <= wait <= 10


async def test_unsolicited_pongs_do_not_keep_a_peer_that_never_answers_pings_alive():
    args = ["--ping-interval", "0.5", "--ping-timeout", "0.5", "--log-level", "warning"]
    with ServerProcess(args) as srv:
        s = await asyncio.to_thread(open_raw_ws, srv.port)
        s.setblocking(False)
        wrong = client_frame(0xA, b"\0\0\0\0")  # empty or guessed payloads: never the ping's nonce
        empty = client_frame(0xA, b"")

        async def dropped() -> bool:
            """Send two unsolicited pongs (4 a second: far under the rate limit); True once dropped."""
            try:
                s.sendall(empty + wrong)
                while s.recv(1 << 16):  # read (so nothing blocks), but never answer a ping
                    pass
                return True  # EOF
            except BlockingIOError:
                return False
            except OSError:
                return True

        await eventually(dropped, 10.0, "the peer that only sends unsolicited pongs to be dropped", 0.25)
        s.close()
        key = 'ticker_connections_closed_total{reason="ping_timeout",transport="ws"}'
        assert (await scrape_async(srv.url)).get(key) == 1


def _raw(port: int, request: bytes, read_all: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(10)) as s:
        s.sendall(request)
        got = b""
        while chunk := s.recv(1 << 16):
            got += chunk
            if not read_all and b"\r\n\r\n" in got:
                break
        return got


async def test_a_nul_or_control_character_in_a_path_is_no_500_and_logs_no_traceback():
    with ServerProcess([]) as srv:
        for path in ("/static/%00", "/static/a%00b.js", "/static/%0a", "/%00", "/static/..%00/x"):
            req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            head = await asyncio.to_thread(_raw, srv.port, req)
            status = int(head.split(b" ", 2)[1])
            assert status in (400, 404), (path, head[:200])
        assert (await scrape_async(srv.url)) is not None  # the server answers on; the log has had its chance
        log = "\n".join(srv.lines)
        assert "Traceback" not in log and " 500 " not in log and "ValueError" not in log, log[-2000:]


async def test_a_request_with_a_body_is_refused_before_its_body_is_read():
    with ServerProcess(["--log-level", "warning"]) as srv:
        # A POST announcing 100 kB, of which only 10 bytes come: the answer does not wait for the rest.
        post = b"POST /api/quotes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n0123456789"
        got = await asyncio.to_thread(_raw, srv.port, post)  # EOF: the server closed without the body
        assert got.startswith(b"HTTP/1.1 405 "), got[:200]
        assert b"Allow: GET, HEAD, OPTIONS" in got and b'"code":"http_405"' in got
        get = b"GET /api/quotes HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"
        got = await asyncio.to_thread(_raw, srv.port, get)
        assert got.startswith(b"HTTP/1.1 413 "), got[:200]
        # A hundred of them leave no connection open (each was closed at once).
        posts = await asyncio.gather(*(asyncio.to_thread(_raw, srv.port, post) for _ in range(100)))
        assert all(p.startswith(b"HTTP/1.1 405 ") for p in posts)


async def test_slow_headers_are_closed_after_the_header_timeout():
    with ServerProcess(["--header-timeout", "1", "--log-level", "warning"]) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout(10)) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the blank line never comes
            t0 = time.monotonic()
            assert s.recv(1024) == b""  # closed without an answer
            assert time.monotonic() - t0 >= 0.9  # not before the timeout
        # an idle keep-alive connection is closed the same way, after a request was answered
        with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout(10)) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            got = b""
            while chunk := s.recv(1 << 16):
                got += chunk
            assert got.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    ("args", "env", "name"),
    [
        (
            ["serve", "--port", "0", "--feed", "finnhub"],
            {"FINNHUB_TOKEN_FILE": "/nonexistent/token"},
            "FINNHUB_TOKEN_FILE",
        ),
        (
            ["serve", "--port", "0", "--auth", "jwt"],
            {"TICKER_JWT_SECRET_FILE": "/nonexistent/secret"},
            "TICKER_JWT_SECRET_FILE",
        ),
    ],
)
async def test_a_secret_file_that_does_not_exist_is_one_line_and_status_2(args, env, name):
    code, err = await run_cli(*args, env=env)
    # a warning about the descriptor budget may come first
    lines = [line for line in err.splitlines() if "--max-connections" not in line]
    assert code == 2, err
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in err, err


async def test_record_exits_1_after_recording_no_quote(tmp_path):
    port = free_port()  # nothing listens there: the feed never gets a quote
    out = tmp_path / "empty.jsonl"
    code, err = await run_cli(
        "record", "--out", str(out), "--duration", "1", "--feed", "finnhub",
        "--feed-url", f"ws://127.0.0.1:{port}/", env={"FINNHUB_TOKEN": "x"},
    )  # fmt: skip
    assert code == 1, err
    assert "no quotes were recorded" in err
