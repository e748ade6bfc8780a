"""Requests refused at their headers: the Host check before the body check, the answers (none to a HEAD),
the counts and the sampled log lines; the Retry-After share of the full and shutting-down 503s."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
import tornado.httputil

from ticker.server.bodies import BodyRefusal, host_checked
from ticker.server.gate import CLOSING_RETRY, FULL_RETRY, spread
from ticker.server.hosts import HostPolicy, host_policy
from ticker.server.refusals import BODY, HOST, RequestRefusals

LOOPBACK = host_policy("127.0.0.1")
ANY = host_policy("0.0.0.0")


class _Conn:
    """An ``HTTPConnection`` that records what is written."""

    def __init__(self) -> None:
        self.start: tornado.httputil.ResponseStartLine | None = None
        self.headers: tornado.httputil.HTTPHeaders | None = None
        self.body: bytes | None = None
        self.finished = False

    def write_headers(self, start: Any, headers: Any, chunk: bytes | None = None) -> None:
        self.start, self.headers, self.body = start, headers, chunk

    def finish(self) -> None:
        self.finished = True


class _Inner(tornado.httputil.HTTPMessageDelegate):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def headers_received(self, start_line: Any, headers: Any) -> None:
        self.seen.append(start_line.path)


class _App(tornado.httputil.HTTPServerConnectionDelegate):
    def __init__(self, policy: HostPolicy | None, refusals: RequestRefusals | None) -> None:
        self.policy, self.refusals, self.inner = policy, refusals, _Inner()

    def start_request(self, server_conn: object, request_conn: Any) -> tornado.httputil.HTTPMessageDelegate:
        return self.inner


def _screen(
    method: str, path: str, headers: dict[str, str], policy: HostPolicy | None = LOOPBACK
) -> tuple[_Conn, _Inner, list[str]]:
    """Send one request's headers through a BodyRefusal over ``policy``: (what was written, the app's
    delegate, the reasons counted)."""
    counted: list[str] = []
    app = _App(policy, RequestRefusals(counted.append))
    conn = _Conn()
    delegate = BodyRefusal(app).start_request(None, conn)  # type: ignore[arg-type]
    line = tornado.httputil.RequestStartLine(method, path, "HTTP/1.1")
    delegate.headers_received(line, tornado.httputil.HTTPHeaders(headers))
    return conn, app.inner, counted


def test_a_foreign_host_gets_421_before_its_body_is_looked_at() -> None:
    conn, inner, counted = _screen(
        "POST", "/api/quotes", {"Host": "evil.example:8888", "Content-Length": "9"}
    )
    assert conn.start is not None and conn.start.code == 421 and conn.finished
    assert conn.body is not None and orjson.loads(conn.body)["error"]["code"] == "host_not_allowed"
    assert conn.headers is not None and conn.headers["Connection"] == "close"
    assert conn.headers["Content-Type"] == "application/json" and "Allow" not in conn.headers
    assert inner.seen == [] and counted == [HOST]


def test_a_foreign_host_without_a_body_is_answered_421_at_its_headers_too() -> None:
    conn, inner, counted = _screen("GET", "/ws?symbols=AAPL", {"Host": "evil.example"})
    assert conn.start is not None and conn.start.code == 421
    assert inner.seen == [] and counted == [HOST]


def test_healthz_is_never_421_but_its_body_is_still_refused() -> None:
    conn, inner, counted = _screen("GET", "/healthz", {"Host": "evil.example"})
    assert conn.start is None and inner.seen == ["/healthz"] and counted == []
    conn, inner, counted = _screen("POST", "/healthz?x=1", {"Host": "evil.example", "Content-Length": "2"})
    assert conn.start is not None and conn.start.code == 405 and counted == [BODY]


def test_an_allowed_host_with_a_body_gets_405_or_413_and_one_without_goes_on() -> None:
    conn, _, counted = _screen("POST", "/api/quotes", {"Host": "127.0.0.1:8888", "Content-Length": "2"})
    assert conn.start is not None and conn.start.code == 405 and counted == [BODY]
    assert conn.headers is not None and conn.headers["Allow"] == "GET, HEAD, OPTIONS"
    conn, _, counted = _screen("GET", "/", {"Host": "localhost", "Transfer-Encoding": "chunked"})
    assert conn.start is not None and conn.start.code == 413 and counted == [BODY]
    conn, inner, counted = _screen("GET", "/api/quotes", {"Host": "localhost:8888"})
    assert conn.start is None and inner.seen == ["/api/quotes"] and counted == []


def test_any_host_or_no_policy_skips_the_host_check() -> None:
    for policy in (ANY, None):
        conn, inner, counted = _screen("GET", "/", {"Host": "evil.example"}, policy)
        assert conn.start is None and inner.seen == ["/"] and counted == []


def test_a_head_refusal_carries_no_payload() -> None:
    conn, _, counted = _screen("HEAD", "/", {"Host": "localhost", "Content-Length": "5"})
    assert conn.start is not None and conn.start.code == 413 and conn.body is None and counted == [BODY]
    assert conn.headers is not None and int(conn.headers["Content-Length"]) > 0  # the GET's length
    conn, _, _ = _screen("HEAD", "/", {"Host": "evil.example"})
    assert conn.start is not None and conn.start.code == 421 and conn.body is None


@pytest.mark.parametrize(
    ("policy", "path", "checked"),
    [
        (LOOPBACK, "/", True),
        (LOOPBACK, "/ws?symbols=A", True),
        (LOOPBACK, "/healthz", False),
        (LOOPBACK, "/healthz?probe=1", False),
        (ANY, "/", False),
        (None, "/", False),
    ],
)
def test_which_requests_have_their_host_checked(policy: HostPolicy | None, path: str, checked: bool) -> None:
    assert host_checked(policy, tornado.httputil.RequestStartLine("GET", path, "HTTP/1.1")) is checked


def _request(
    host: str = "evil.example", uri: str = "/api/quotes?access_token=SECRET", method: str = "GET"
) -> Any:
    line = tornado.httputil.RequestStartLine(method, uri, "HTTP/1.1")
    return tornado.httputil.HTTPServerRequest(
        start_line=line, headers=tornado.httputil.HTTPHeaders({"Host": host})
    )


def test_refusals_are_counted_each_and_logged_once_an_interval_per_reason(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    monkeypatch.setattr("feeds.ratelimit.time.monotonic", lambda: now[0])
    counted: list[str] = []
    refusals = RequestRefusals(counted.append, logger=logging.getLogger("test.refusals"))
    with caplog.at_level(logging.WARNING, "test.refusals"):
        for _ in range(5):
            refusals.refused(HOST, 421, _request())
        refusals.refused(BODY, 405, _request("localhost", "/", "POST"))
        now[0] += 1.0
        refusals.refused(HOST, 421, _request("x" * 500))
    assert counted == [HOST] * 5 + [BODY] + [HOST]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert lines[0].startswith("421 GET /api/quotes?access_token=*** () refused: Host 'evil.example'")
    assert "SECRET" not in "".join(lines)
    assert lines[1].startswith("405 POST / () refused: ") and "no route takes" in lines[1]
    assert lines[2].endswith("(4 similar suppressed)") and "x" * 101 not in lines[2]


def test_nothing_is_formatted_when_warnings_are_off(caplog: pytest.LogCaptureFixture) -> None:
    counted: list[str] = []
    refusals = RequestRefusals(counted.append, logger=logging.getLogger("test.refusals.off"))
    with caplog.at_level(logging.ERROR, "test.refusals.off"):
        refusals.refused(HOST, 421, _request())
    assert counted == [HOST] and caplog.records == []


def test_retry_after_of_the_503s_is_a_base_plus_a_random_share() -> None:
    assert spread(FULL_RETRY, lambda lo, hi: lo) == 5 and spread(FULL_RETRY, lambda lo, hi: hi) == 10
    assert spread(CLOSING_RETRY, lambda lo, hi: lo) == 1 and spread(CLOSING_RETRY, lambda lo, hi: hi) == 3
    seen = {spread(FULL_RETRY) for _ in range(500)}
    assert seen <= set(range(5, 11)) and len(seen) > 1
