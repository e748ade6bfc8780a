"""Host checks against real servers: 421 for a host the server does not answer for (DNS rebinding), origins
compared by scheme, host and port on /ws and /sse, ``--allowed-hosts`` behind a TLS proxy, and the warning of
a server bound to every interface."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.support.serverproc import ServerProcess
from tests.support.timing import eventually_sync, timeout
from tests.support.wsframes import upgrade_request

BASE = ["--loop", "asyncio", "--log-level", "info", "--sim-rate", "5", "--seed", "7"]
MISDIRECTED = {
    "error": {
        "code": "host_not_allowed",
        "message": "this server does not answer for the host in the Host header (see --allowed-hosts)",
    }
}
EVIL = "evil.example"
WARNING = "without --allowed-hosts"


@pytest.fixture(scope="module")
def loopback() -> Iterator[ServerProcess]:
    """The default: bound to 127.0.0.1, no ``--allowed-hosts``; with a ``--metrics-port``."""
    with ServerProcess(["--host", "127.0.0.1", "--metrics-port", "0", *BASE]) as srv:
        yield srv


def _get(srv: ServerProcess, path: str, method: str = "GET", **headers: str) -> httpx.Response:
    return httpx.request(method, srv.url + path, headers=headers, timeout=timeout(5))


def _ws_status(srv: ServerProcess, host: str, extra: dict[str, str] | None = None) -> tuple[int, bytes]:
    """The status of a WebSocket upgrade of /ws with ``Host: host`` and ``extra`` headers, and the bytes read
    (a refusal's whole response; the connection is closed after a 101)."""
    req = upgrade_request(host, "/ws")
    more = "".join(f"{k}: {v}\r\n" for k, v in (extra or {}).items()).encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout(5)) as sock:
        sock.sendall(req[:-2] + more + b"\r\n")
        data = b""
        while b"\r\n\r\n" not in data or (not data.startswith(b"HTTP/1.1 101") and _short(data)):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def _short(data: bytes) -> bool:
    """Whether a response with a Content-Length has not all of its body yet."""
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return m is not None and len(body) < int(m.group(1))


def _sse_status(srv: ServerProcess, **headers: str) -> tuple[int, bytes]:
    """The status of ``GET /sse?symbols=AAPL`` with ``headers``, and the body of a refusal (none of a stream)."""
    with httpx.stream("GET", srv.url + "/sse?symbols=AAPL", headers=headers, timeout=timeout(5)) as r:
        return r.status_code, (r.read() if r.status_code != 200 else b"")


ROUTES = [
    "/",
    "/index.html",
    "/config.json",
    "/sse?symbols=AAPL",
    "/api/quotes?symbols=AAPL",
    "/api/bars?symbol=AAPL&interval=1m",
    "/api/symbols",
    "/api/search?q=AAP",
    "/readyz",
    "/metrics",
    "/no-such-page",
]


def test_another_host_gets_421_on_every_route_but_healthz(loopback: ServerProcess) -> None:
    for host in (
        f"{EVIL}:{loopback.port}",
        EVIL,
        f"127.0.0.1.{EVIL}:{loopback.port}",
        f"localhost:{loopback.port}x",
    ):
        for path in ROUTES:
            r = _get(loopback, path, Host=host)
            assert r.status_code == 421 and r.json() == MISDIRECTED, (host, path, r.status_code)
            assert r.headers["content-type"] == "application/json"
        status, data = _ws_status(loopback, host)
        assert status == 421 and b'"code":"host_not_allowed"' in data
        r = _get(loopback, "/api/quotes", "OPTIONS", Host=host, Origin=f"http://{host}")
        assert r.status_code == 421
        r = _get(loopback, "/healthz", Host=host)
        assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_the_loopback_names_are_answered_on_loopback(loopback: ServerProcess) -> None:
    for host in (
        f"127.0.0.1:{loopback.port}",
        f"localhost:{loopback.port}",
        f"[::1]:{loopback.port}",
        "LOCALHOST",
    ):
        assert _get(loopback, "/api/quotes?symbols=AAPL", Host=host).status_code == 200, host
        assert _ws_status(loopback, host)[0] == 101, host


def test_a_rebinding_page_is_refused(loopback: ServerProcess) -> None:
    """What a page on a rebinding domain sends: its own host and origin (the browser calls it same-origin)."""
    host = f"{EVIL}:{loopback.port}"
    browser = {"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
    assert _ws_status(loopback, host, browser)[0] == 421
    status, body = _sse_status(loopback, Host=host, **browser)
    assert status == 421 and httpx.Response(421, content=body).json() == MISDIRECTED
    assert _get(loopback, "/api/quotes?symbols=AAPL", Host=host, **browser).status_code == 421


@pytest.mark.parametrize("fetch_site", [None, "same-origin", "none", "cross-site"])
def test_look_alike_origins_are_refused_on_ws_and_sse(
    loopback: ServerProcess, fetch_site: str | None
) -> None:
    port = loopback.port
    host = f"127.0.0.1:{port}"
    site = {} if fetch_site is None else {"Sec-Fetch-Site": fetch_site}
    for origin in (
        f"chrome-extension://127.0.0.1:{port}",
        f"https://127.0.0.1:{port}",  # an https page: this server is http
        f"http://127.0.0.1:{port + 1}",  # another port of the same host
        "http://127.0.0.1",
        f"http://{EVIL}:{port}",
        "null",
    ):
        assert _ws_status(loopback, host, {"Origin": origin, **site})[0] == 403, origin
        status, body = _sse_status(loopback, Origin=origin, **site)
        assert status == 403 and b'"forbidden_origin"' in body, origin
    for origin in (
        f"http://127.0.0.1:{port}",
        f"http://localhost:{port}",
    ):  # the page's own, or another allowed host
        assert _ws_status(loopback, host, {"Origin": origin, **site})[0] == 101, origin
        assert _sse_status(loopback, Origin=origin, **site)[0] == 200, origin


def test_the_metrics_port_answers_any_host(loopback: ServerProcess) -> None:
    """The --metrics-port listener is for scrapers and probes that name the node by address: no host check."""
    (port,) = re.findall(r"metrics on http://[^:]+:(\d+)/metrics", loopback.output())
    for path in ("/metrics", "/readyz", "/healthz"):
        r = httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": EVIL}, timeout=timeout(5))
        assert r.status_code in (200, 503) and r.status_code != 421, path
    assert loopback.output().count(WARNING) == 0


def test_allowed_hosts_behind_a_tls_proxy() -> None:
    """The flag replaces the default; a trusted proxy's X-Forwarded-Proto makes the request https."""
    args = ["--host", "127.0.0.1", "--trusted-proxies", "127.0.0.1", *BASE]
    with ServerProcess(args, env={"TICKER_ALLOWED_HOSTS": "quotes.example.com,desk.example.com:8443"}) as srv:
        https = {"X-Forwarded-Proto": "https"}
        proxied = {"Host": "quotes.example.com", **https}
        assert _get(srv, "/api/quotes?symbols=AAPL", **proxied).status_code == 200
        assert _get(srv, "/api/quotes?symbols=AAPL", Host=f"127.0.0.1:{srv.port}").status_code == 421
        assert _get(srv, "/api/quotes?symbols=AAPL", Host="desk.example.com:8443").status_code == 200
        assert _get(srv, "/api/quotes?symbols=AAPL", Host="desk.example.com").status_code == 421
        assert _sse_status(srv, Origin="https://quotes.example.com", **proxied)[0] == 200
        assert _sse_status(srv, Origin="https://quotes.example.com:443", **proxied)[0] == 200
        assert _sse_status(srv, Origin="http://quotes.example.com", **proxied)[0] == 403
        assert _sse_status(srv, Origin="https://quotes.example.com:8443", **proxied)[0] == 403
        assert (
            _ws_status(srv, "quotes.example.com", {"Origin": "https://quotes.example.com", **https})[0] == 101
        )
        assert (
            _ws_status(srv, "quotes.example.com", {"Origin": "http://quotes.example.com", **https})[0] == 403
        )
        r = _get(srv, "/api/quotes?symbols=AAPL", Origin="https://quotes.example.com", **proxied)
        assert r.headers["access-control-allow-origin"] == "https://quotes.example.com"  # CORS: the same rule
        assert srv.output().count(WARNING) == 0


def test_a_server_on_every_interface_answers_any_host_and_warns_once() -> None:
    with ServerProcess(["--host", "0.0.0.0", "--workers", "2", *BASE]) as srv:
        eventually_sync(lambda: srv.output().count("ticker listening on") == 2 or None, what="both workers")
        assert _get(srv, "/api/quotes?symbols=AAPL", Host=f"{EVIL}:{srv.port}").status_code == 200
        lines = [ln for ln in srv.output().splitlines() if WARNING in ln]
        assert len(lines) == 1, lines
        assert "WARNING" in lines[0] and "any host" in lines[0] and "TICKER_ALLOWED_HOSTS" in lines[0]
