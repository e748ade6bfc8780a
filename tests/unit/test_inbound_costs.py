"""Every inbound frame costs (issue 17): pings, pongs, fragments and bytes against the rate limit; the echoed
ping id capped; symbols checked as ASCII before case folding; DNS failures in words; secret files that do
not read; requests with a body refused; error lines of the access log sampled."""

from __future__ import annotations

import logging
import socket
from typing import Any

import aiohttp
import orjson
import pytest
import tornado.httputil

from feeds import reasons
from feeds.credentials import secret
from feeds.errors import FeedConfigError
from ticker import protocol
from ticker.errors import BAD_REQUEST, FLOOD, RATE_LIMITED, InvalidSymbol, ProtocolError
from ticker.hub import Hub
from ticker.server.bodies import refusal
from ticker.server.peers import access_logger
from ticker.session import BYTES_PER_TOKEN, Session, query_symbols
from ticker.symbols import valid_symbol


def make(rate: float = 10.0, burst: int = 5) -> Session[str]:
    hub: Hub[str] = Hub()
    hub.add("c")
    return Session(hub, "c", rate, burst, 0.0)


def codes(replies: list[bytes]) -> list[str]:
    return [m["code"] for m in map(orjson.loads, replies) if m["type"] == "error"]


# -- the echoed ping id -------------------------------------------------------------------------
def test_a_ping_id_up_to_the_cap_is_echoed_and_a_larger_one_is_a_bad_request():
    at_cap = "x" * (protocol.MAX_PING_ID_BYTES - 2)  # two quotes make it exactly the cap
    assert protocol.parse_client_message(orjson.dumps({"op": "ping", "id": at_cap})) == protocol.Ping(at_cap)
    for too_big in ("x" * (protocol.MAX_PING_ID_BYTES - 1), list(range(100)), {"k": "v" * 300}):
        with pytest.raises(ProtocolError) as info:
            protocol.parse_client_message(orjson.dumps({"op": "ping", "id": too_big}))
        assert info.value.code == BAD_REQUEST and "256" in info.value.message
    out = make().receive(orjson.dumps({"op": "ping", "id": "y" * 60_000}).decode(), 0.0)
    assert codes(out.replies) == [BAD_REQUEST] and len(out.replies[0]) < 200  # the reply stays small


# -- symbols are ASCII ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw", ["ﬁ", "ß", "ss\u00df", "\u00a0AAPL", "AAPL\u00a0", "AAPL\u2003", "ａａｐｌ", "aapl\u0130", "İ"]
)
def test_non_ascii_is_refused_before_any_case_folding(raw: str):
    assert valid_symbol(raw) is None
    with pytest.raises(InvalidSymbol):
        query_symbols(raw, 10, "connection")
    assert protocol.parse_client_message(orjson.dumps({"op": "subscribe", "symbols": [raw]})) == (
        protocol.Subscribe([], [raw])
    )


def test_ascii_symbols_are_still_trimmed_and_upper_cased():
    assert valid_symbol(" aapl\t") == "AAPL" and valid_symbol("brk.b\n") == "BRK.B"
    assert valid_symbol("AAPL\r\n") == "AAPL" and valid_symbol("") is None


# -- what frames cost ---------------------------------------------------------------------------
def test_pings_pongs_and_fragments_spend_the_tokens_messages_need():
    s = make(rate=10.0, burst=5)
    for _ in range(5):
        assert s.frame(0.0).replies == []
    out = s.receive('{"op":"ping","id":1}', 0.0)  # the bucket is empty: the message is dropped
    assert codes(out.replies) == [RATE_LIMITED]
    out = s.receive('{"op":"ping","id":2}', 0.1)  # a tenth of a second later, one token is back
    assert out.replies == [b'{"type":"pong","id":2}']


def test_a_refused_frame_counts_towards_the_flood_close():
    s = make(rate=10.0, burst=5)
    refused = [s.frame(0.0) for _ in range(5 + 5 + 1)]  # 5 spend the burst, 6 more are refused in a row
    assert codes(refused[5].replies) == [RATE_LIMITED]  # the first refused one is told
    assert all(o.close is None for o in refused[:-1]) and refused[-1].close == FLOOD
    assert s.frame(0.0).close is None and s.receive('{"op":"ping"}', 9.0).replies == []  # closed: ignored


def test_accepted_inputs_take_refusals_back_one_for_one():
    s = make(rate=10.0, burst=5)
    for _ in range(5 + 4):  # the burst, then four refused in a row
        s.frame(0.0)
    assert s.violations == 4
    for k in range(4):  # within the rate again: each accepted input takes one refusal back
        assert s.frame(0.1 * (k + 1)).errors == []
    assert s.violations == 0
    assert all(s.frame(0.4).close is None for _ in range(5))  # so five more refusals do not close yet


def test_a_flooder_that_gets_a_token_now_and_then_is_still_closed():
    s = make(rate=10.0, burst=5)
    closed_at = None
    for i in range(300):  # three frames per token: one accepted, two refused
        if s.frame(i / 30).close == FLOOD:
            closed_at = i / 30
            break
    assert closed_at is not None and closed_at < 1.0, closed_at


def test_bytes_cost_one_token_per_block_borrowed_from_the_next_messages():
    s = make(rate=10.0, burst=5)
    big = '{"op":"ping","id":1,"pad":"' + "x" * (3 * BYTES_PER_TOKEN) + '"}'  # 1 + 3 tokens
    assert s.receive(big, 0.0).replies == [b'{"type":"pong","id":1}']
    assert s.receive('{"op":"ping","id":2}', 0.0).errors == []  # the fifth token
    assert s.receive('{"op":"ping","id":3}', 0.0).errors == [RATE_LIMITED]
    s2 = make(rate=10.0, burst=5)
    huge = "x" * (20 * BYTES_PER_TOKEN)  # let in on one token, 20 more borrowed: 2 s of the rate
    assert s2.receive(huge, 0.0).errors == ["bad_json"]
    assert s2.receive('{"op":"ping"}', 1.0).errors == [RATE_LIMITED]  # still in debt after a second
    assert s2.receive('{"op":"ping"}', 2.2).errors == []


# -- reasons ---------------------------------------------------------------------------------------
class _Key:
    host, port, ssl = "stream.example.com", 443, True


def test_a_failed_dns_lookup_is_said_in_words_naming_the_host():
    host = "stream.example.com"
    gai = socket.gaierror(-2, "Name or service not known")
    want = f"DNS lookup failed for {host}"
    assert reasons.connection_failed(host, gai) == want
    assert reasons.connection_failed(host, aiohttp.ClientConnectorDNSError(_Key(), gai)) == want  # type: ignore[arg-type]
    try:  # another library's wrapper of the lookup error
        try:
            raise gai
        except socket.gaierror as inner:
            raise ConnectionError("Error -2 connecting to stream.example.com") from inner
    except ConnectionError as wrapped:
        assert reasons.connection_failed(host, wrapped) == want
    assert "gaierror" not in reasons.connection_failed(host, gai)


# -- secret files ----------------------------------------------------------------------------------
def test_a_secret_file_that_does_not_read_is_one_line_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("T_TOKEN", raising=False)
    monkeypatch.setenv("T_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(FeedConfigError) as info:
        secret("T_TOKEN")
    assert str(info.value).startswith("T_TOKEN_FILE: cannot read") and "\n" not in str(info.value)
    (tmp_path / "good").write_text(" s3cret \n")
    monkeypatch.setenv("T_TOKEN_FILE", str(tmp_path / "good"))
    assert secret("T_TOKEN") == "s3cret"


# -- request bodies --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("GET", {}, None),
        ("HEAD", {}, None),
        ("OPTIONS", {}, None),
        ("GET", {"Content-Length": "0"}, None),
        ("POST", {}, None),  # no body to read: the routes answer 405 themselves
        ("POST", {"Content-Length": "0"}, None),
        ("PUT", {"Content-Length": "10"}, 405),
        ("POST", {"Transfer-Encoding": "chunked"}, 405),
        ("GET", {"Content-Length": "5"}, 413),
        ("GET", {"Transfer-Encoding": "chunked"}, 413),
    ],
)
def test_a_body_or_a_method_that_carries_one_is_refused(
    method: str, headers: dict[str, str], status: int | None
):
    line = tornado.httputil.RequestStartLine(method, "/api/quotes", "HTTP/1.1")
    assert refusal(line, tornado.httputil.HTTPHeaders(headers)) == status


# -- the access log --------------------------------------------------------------------------------
class _Handler:
    def __init__(self, status: int) -> None:
        self.status = status
        line = tornado.httputil.RequestStartLine("GET", "/static/x", "HTTP/1.1")
        head = tornado.httputil.HTTPHeaders({"Host": "t"})
        self.request = tornado.httputil.HTTPServerRequest(start_line=line, headers=head)
        self.request.remote_ip = "192.0.2.1"

    def get_status(self) -> int:
        return self.status


def test_error_lines_of_the_access_log_are_sampled_per_status(caplog: pytest.LogCaptureFixture):
    log: Any = access_logger(())
    with caplog.at_level(logging.INFO, logger="tornado.access"):
        for _ in range(500):
            log(_Handler(404))
            log(_Handler(503))
        for _ in range(3):
            log(_Handler(200))
    lines = [r.getMessage() for r in caplog.records]
    assert sum(line.startswith("404 ") for line in lines) <= 2  # one a second (two if a second passed)
    assert sum(line.startswith("503 ") for line in lines) <= 2
    assert sum(line.startswith("200 ") for line in lines) == 3  # successes are not sampled
