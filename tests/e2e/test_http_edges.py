"""The HTTP edge against real servers: /metrics behind ``--auth jwt``, REST CORS for ``--allowed-origins``,
an access log that never shows an ``access_token`` and names the client behind ``--trusted-proxies`` only."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.support.serverproc import ServerProcess
from tests.support.timing import eventually_sync, timeout

APP = "https://app.example"
EVIL = "https://evil.example"
SECRET = "SECRET123"
METRICS_TOKEN = "metrics-token-Zq7"
JWT_ENV = {"TICKER_JWT_SECRET": "s" * 32, "TICKER_METRICS_TOKEN": METRICS_TOKEN}
BASE = ["--host", "127.0.0.1", "--loop", "asyncio", "--log-level", "info", "--sim-rate", "5", "--seed", "7"]


def _start(args: list[str], env: dict[str, str], unset: tuple[str, ...] = ()) -> ServerProcess:
    srv = ServerProcess([*BASE, *args], env=env)
    for name in unset:
        srv.env.pop(name, None)
    return srv.start(20.0)


@pytest.fixture(scope="module")
def open_server() -> Iterator[ServerProcess]:
    """``--auth none`` with an extra allowed origin and the loopback as a trusted proxy."""
    srv = _start(
        ["--allowed-origins", APP, "--trusted-proxies", "127.0.0.1,::1"],
        {"TICKER_METRICS_TOKEN": METRICS_TOKEN},
    )
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def jwt_server() -> Iterator[ServerProcess]:
    """``--auth jwt`` with a metrics token and a ``--metrics-port``; no trusted proxy."""
    srv = _start(["--auth", "jwt", "--metrics-port", "0", "--allowed-origins", APP], JWT_ENV)
    try:
        yield srv
    finally:
        srv.stop()


def _get(url: str, method: str = "GET", **headers: str) -> httpx.Response:
    return httpx.request(method, url, headers=headers, timeout=timeout(5))


def _metrics_url(srv: ServerProcess) -> str:
    (port,) = re.findall(r"metrics on http://[^:]+:(\d+)/metrics", srv.output())
    return f"http://127.0.0.1:{port}/metrics"


def _log_line(srv: ServerProcess, needle: str, again: str | None = None) -> str:
    """The access log line holding ``needle`` (waiting for it: a line is written once a request ends).

    ``again``: a URL to ask again while waiting, for an error answer: those lines are sampled (one per
    status a second), so the line of an earlier request may have been left out."""

    def find() -> str | None:
        line = next((ln for ln in srv.output().splitlines() if "tornado.access" in ln and needle in ln), None)
        if line is None and again is not None:
            _get(again)
        return line

    return eventually_sync(find, what=f"an access log line with {needle!r}")


# -- /metrics ---------------------------------------------------------------------------------------------


def test_metrics_on_the_public_port_need_the_metrics_token_with_jwt(jwt_server: ServerProcess):
    url = jwt_server.url + "/metrics"
    r = _get(url)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["code"] == "unauthorized" and "ticker_" not in r.text
    for bad in ("Bearer wrong", f"Bearer {METRICS_TOKEN}x", f"Basic {METRICS_TOKEN}", METRICS_TOKEN):
        r = _get(url, Authorization=bad)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), bad
    r = _get(url, Authorization=f"Bearer {METRICS_TOKEN}")
    assert r.status_code == 200 and "ticker_connections" in r.text
    assert _get(url, Authorization=f"bearer {METRICS_TOKEN}").status_code == 200  # the scheme is case-blind
    assert METRICS_TOKEN not in jwt_server.output()


def test_the_metrics_port_serves_metrics_without_a_token(jwt_server: ServerProcess):
    r = _get(_metrics_url(jwt_server))
    assert r.status_code == 200 and "ticker_connections" in r.text


@pytest.mark.parametrize("token", [None, ""])
def test_metrics_are_404_with_jwt_and_no_metrics_token(token: str | None):
    env = {"TICKER_JWT_SECRET": "s" * 32}
    if token is not None:
        env["TICKER_METRICS_TOKEN"] = token
    srv = _start(
        ["--auth", "jwt", "--log-level", "warning"],
        env,
        unset=() if token is not None else ("TICKER_METRICS_TOKEN",),
    )
    try:
        assert _get(srv.url + "/metrics").status_code == 404
        assert _get(srv.url + "/metrics", Authorization=f"Bearer {METRICS_TOKEN}").status_code == 404
        assert _get(srv.url + "/healthz").status_code == 200  # still public
    finally:
        srv.stop()


def test_metrics_stay_public_without_auth(open_server: ServerProcess):
    assert _get(open_server.url + "/metrics").status_code == 200


# -- CORS on /api/* ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/quotes?symbols=AAPL", "/api/symbols"])
def test_preflight_for_an_allowed_origin(open_server: ServerProcess, path: str):
    r = _get(
        open_server.url + path,
        "OPTIONS",
        Origin=APP,
        **{"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"},
    )
    assert r.status_code == 204, r.text
    h = r.headers
    assert h["access-control-allow-origin"] == APP and "Origin" in h["vary"]
    assert h["access-control-allow-methods"] == "GET, OPTIONS"
    assert h["access-control-allow-headers"] == "Authorization"
    assert h["access-control-max-age"] == "600"


def test_preflight_for_any_other_origin_is_403(open_server: ServerProcess):
    for headers in ({"Origin": EVIL, "Access-Control-Request-Method": "GET"}, {}):
        r = _get(open_server.url + "/api/quotes", "OPTIONS", **headers)
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
        assert "access-control-allow-methods" not in r.headers
        assert r.json()["error"]["code"] == "forbidden_origin"


def test_get_answers_cors_for_allowed_origins_only(open_server: ServerProcess):
    same_host = open_server.url  # the page's own origin is always allowed, as on /ws and /sse
    for origin in (APP, APP + "/", same_host):
        r = _get(open_server.url + "/api/quotes?symbols=AAPL", Origin=origin)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
        assert "Origin" in r.headers["vary"]
    r = _get(open_server.url + "/api/quotes?symbols=AAPL", Origin=EVIL)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers  # the browser blocks it
    r = _get(open_server.url + "/api/symbols")
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_errors_carry_cors_headers_so_the_page_can_read_them(open_server: ServerProcess):
    r = _get(open_server.url + "/api/quotes?symbols=bad$", Origin=APP)
    assert r.status_code == 400 and r.headers["access-control-allow-origin"] == APP
    r = _get(open_server.url + "/api/quotes", "POST", Origin=APP)  # an HTTPError: headers are reset first
    assert r.status_code == 405 and r.headers["access-control-allow-origin"] == APP


def test_ops_endpoints_answer_no_cors(open_server: ServerProcess):
    r = _get(open_server.url + "/healthz", Origin=APP)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert _get(open_server.url + "/healthz", "OPTIONS", Origin=APP).status_code == 405


def test_preflight_needs_no_token_with_jwt(jwt_server: ServerProcess):
    r = _get(
        jwt_server.url + "/api/quotes", "OPTIONS", Origin=APP, **{"Access-Control-Request-Method": "GET"}
    )
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == APP
    r = _get(jwt_server.url + "/api/quotes?symbols=AAPL", Origin=APP)  # no token: refused, but readable
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == APP


# -- the access log ---------------------------------------------------------------------------------------


def test_access_log_never_shows_an_access_token(open_server: ServerProcess):
    srv = open_server
    for path, status in (
        (f"/api/symbols?access_token={SECRET}", 200),
        (f"/api/quotes?symbols=AAPL&access_token={SECRET}&redact=1", 200),
        (f"/api/quotes?symbols=bad$&token={SECRET}", 400),
        (f"/nowhere?access%5Ftoken={SECRET}", 404),
    ):
        assert _get(srv.url + path).status_code == status, path
    assert "GET /api/symbols?access_token=*** (" in _log_line(srv, "/api/symbols?access_token=")
    assert " INFO " in _log_line(srv, "&access_token=***&redact=1")
    assert " WARNING " in _log_line(
        srv, "?symbols=bad$&token=***", again=srv.url + f"/api/quotes?symbols=bad$&token={SECRET}"
    )
    _log_line(srv, "/nowhere?access%5Ftoken=***", again=srv.url + f"/nowhere?access%5Ftoken={SECRET}")
    assert SECRET not in srv.output()


def test_access_log_with_jwt_never_shows_a_rejected_token(jwt_server: ServerProcess):
    r = _get(jwt_server.url + f"/api/symbols?access_token={SECRET}&jwt=1")
    assert r.status_code == 401
    again = jwt_server.url + f"/api/symbols?access_token={SECRET}&jwt=1"
    assert " WARNING " in _log_line(jwt_server, "/api/symbols?access_token=***&jwt=1", again=again)
    assert SECRET not in jwt_server.output()


def test_access_log_names_the_client_behind_a_trusted_proxy(open_server: ServerProcess):
    r = _get(open_server.url + "/api/symbols?via=proxy", **{"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
    assert r.status_code == 200
    assert _log_line(open_server, "?via=proxy").endswith("ms") and "(203.0.113.7)" in _log_line(
        open_server, "?via=proxy"
    )
    _get(open_server.url + "/api/symbols?via=real-ip", **{"X-Real-IP": "2001:db8::7"})
    assert "(2001:db8::7)" in _log_line(open_server, "?via=real-ip")
    _get(open_server.url + "/api/symbols?via=garbage", **{"X-Forwarded-For": "<script>"})
    assert "(127.0.0.1)" in _log_line(open_server, "?via=garbage")


def test_forwarded_headers_of_an_untrusted_peer_are_ignored(jwt_server: ServerProcess):
    _get(
        jwt_server.url + "/healthz?via=untrusted",
        **{"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.8"},
    )
    line = _log_line(jwt_server, "?via=untrusted")
    assert "(127.0.0.1)" in line and "203.0.113" not in line
