"""The client address behind trusted proxies, and the redaction of tokens from what Tornado logs."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pytest
import tornado.httputil

from ticker.errors import OptionError
from ticker.server.peers import (
    RedactTokens,
    access_logger,
    client_address,
    redact_uri,
    trusted_networks,
)

PROXIES = trusted_networks("10.0.0.0/8, 192.168.1.1, fd00::/8")


def request(
    peer: str | None, headers: Mapping[str, str | list[str]] | None = None, uri: str = "/"
) -> tornado.httputil.HTTPServerRequest:
    """A request from ``peer`` (Tornado's ``remote_ip``) with ``headers`` (``_`` for ``-``; a list repeats one)."""
    h = tornado.httputil.HTTPHeaders({"Host": "ticker.test"})
    for name, value in (headers or {}).items():
        for v in [value] if isinstance(value, str) else value:
            h.add(name.replace("_", "-"), v)
    line = tornado.httputil.RequestStartLine("GET", uri, "HTTP/1.1")
    req = tornado.httputil.HTTPServerRequest(headers=h, start_line=line)
    req.remote_ip = peer
    return req


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # An untrusted peer: its headers are ignored, whatever they say.
        ("203.0.113.9", {"X_Forwarded_For": "1.2.3.4"}, "203.0.113.9"),
        ("203.0.113.9", {"X_Real_IP": "1.2.3.4"}, "203.0.113.9"),
        # A trusted peer: the right-most address that is not itself a trusted proxy.
        ("10.0.0.5", {"X_Forwarded_For": "1.2.3.4"}, "1.2.3.4"),
        ("10.0.0.5", {"X_Forwarded_For": "6.6.6.6, 1.2.3.4"}, "1.2.3.4"),  # 6.6.6.6 is what the client wrote
        ("10.0.0.5", {"X_Forwarded_For": "6.6.6.6, 1.2.3.4, 192.168.1.1, 10.9.9.9"}, "1.2.3.4"),
        ("10.0.0.5", {"X_Forwarded_For": ["6.6.6.6, 1.2.3.4", "10.1.1.1"]}, "1.2.3.4"),  # repeated header
        ("10.0.0.5", {"X_Forwarded_For": "10.1.1.1, 10.2.2.2"}, "10.1.1.1"),  # all trusted: the left-most
        ("192.168.1.1", {"X_Forwarded_For": "1.2.3.4"}, "1.2.3.4"),  # a single trusted address
        ("192.168.1.2", {"X_Forwarded_For": "1.2.3.4"}, "192.168.1.2"),  # its neighbour is not trusted
        # IPv6 peers, clients and the IPv4-mapped form of a trusted IPv4 peer.
        ("fd00::1", {"X_Forwarded_For": "2001:db8::7"}, "2001:db8::7"),
        ("fd00::1", {"X_Forwarded_For": "2001:DB8:0:0::7, fd00::2"}, "2001:db8::7"),
        ("::ffff:10.0.0.5", {"X_Forwarded_For": "1.2.3.4"}, "1.2.3.4"),
        ("2001:db8::1", {"X_Forwarded_For": "1.2.3.4"}, "2001:db8::1"),
        # X-Real-IP when there is no X-Forwarded-For.
        ("10.0.0.5", {"X_Real_IP": "1.2.3.4"}, "1.2.3.4"),
        ("10.0.0.5", {"X_Real_IP": "2001:db8::9"}, "2001:db8::9"),
        ("10.0.0.5", {"X_Forwarded_For": "5.5.5.5", "X_Real_IP": "1.2.3.4"}, "5.5.5.5"),
        # Garbage is ignored as a whole: the other header, else the peer.
        ("10.0.0.5", {"X_Forwarded_For": "1.2.3.4, not-an-ip"}, "10.0.0.5"),
        ("10.0.0.5", {"X_Forwarded_For": "1.2.3.4:5678"}, "10.0.0.5"),
        ("10.0.0.5", {"X_Forwarded_For": "<script>", "X_Real_IP": "1.2.3.4"}, "1.2.3.4"),
        ("10.0.0.5", {"X_Forwarded_For": ", ,"}, "10.0.0.5"),
        ("10.0.0.5", {"X_Real_IP": "1.2.3.4, 5.6.7.8"}, "10.0.0.5"),
        ("10.0.0.5", {"X_Real_IP": ["1.2.3.4", "5.6.7.8"]}, "10.0.0.5"),
        ("10.0.0.5", {}, "10.0.0.5"),
    ],
)
def test_client_address(peer: str, headers: dict[str, str | list[str]], expected: str):
    assert client_address(request(peer, headers), PROXIES) == expected


def test_nobody_is_trusted_by_default():
    assert trusted_networks("") == () == trusted_networks(" , ")
    assert client_address(request("127.0.0.1", {"X_Forwarded_For": "1.2.3.4"}), ()) == "127.0.0.1"


def test_a_peer_without_an_ip_address_is_passed_through():
    assert client_address(request(None, {"X_Forwarded_For": "1.2.3.4"}), PROXIES) == ""
    assert client_address(request("unix-socket", {"X_Forwarded_For": "1.2.3.4"}), PROXIES) == "unix-socket"


def test_trusted_networks_parse_ipv4_ipv6_and_refuse_garbage():
    nets = trusted_networks("127.0.0.1,10.0.0.0/8,::1,fd00::/8, 172.16.0.1/12")
    assert [str(n) for n in nets] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128", "fd00::/8", "172.16.0.0/12"]
    for bad in ("10.0.0.0/33", "example.com", "10.0.0.0/8;rm"):
        with pytest.raises(OptionError, match="not an IP address or CIDR"):
            trusted_networks(f"127.0.0.1,{bad}")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/api/symbols?access_token=SECRET", "/api/symbols?access_token=***"),
        ("/sse?symbols=AAPL&access_token=SECRET&x=1", "/sse?symbols=AAPL&access_token=***&x=1"),
        ("/sse?token=SECRET", "/sse?token=***"),
        ("/sse?access%5Ftoken=SECRET", "/sse?access%5Ftoken=***"),  # the server reads that name too
        ("/sse?Access_Token=SECRET&access_token=S2", "/sse?Access_Token=***&access_token=***"),
        ("/sse?symbols=access_token", "/sse?symbols=access_token"),
        ("/sse?my_token=keep", "/sse?my_token=keep"),
        ("/ws", "/ws"),
    ],
)
def test_redact_uri(uri: str, expected: str):
    assert redact_uri(uri) == expected


class _Handler:
    """What the log function reads of a RequestHandler."""

    def __init__(self, status: int, req: tornado.httputil.HTTPServerRequest) -> None:
        self.status, self.request = status, req

    def get_status(self) -> int:
        return self.status


@pytest.mark.parametrize(
    ("status", "level"), [(200, "INFO"), (304, "INFO"), (403, "WARNING"), (503, "ERROR")]
)
def test_access_log_line(caplog: pytest.LogCaptureFixture, status: int, level: str):
    log = access_logger(PROXIES)
    req = request(
        "10.0.0.5", {"X_Forwarded_For": "1.2.3.4"}, "/api/quotes?symbols=AAPL&access_token=SECRET123"
    )
    with caplog.at_level(logging.INFO, logger="tornado.access"):
        log(_Handler(status, req))  # type: ignore[arg-type]
    (rec,) = caplog.records
    assert rec.name == "tornado.access" and rec.levelname == level
    text = rec.getMessage()
    assert text.startswith(f"{status} GET /api/quotes?symbols=AAPL&access_token=*** (1.2.3.4) ")
    assert text.endswith("ms") and "SECRET123" not in text


def test_redact_filter_covers_tornado_error_lines():
    rec = logging.LogRecord(
        "tornado.application",
        logging.ERROR,
        __file__,
        1,
        "Uncaught exception %s\n%r",
        ("GET /sse?access_token=abc.def (1.2.3.4)", "HTTPServerRequest(uri='/sse?token=xyz&a=1')"),
        None,
    )
    assert RedactTokens().filter(rec)
    text = rec.getMessage()
    assert "abc.def" not in text and "xyz" not in text
    assert "/sse?access_token=*** (1.2.3.4)" in text and "uri='/sse?token=***&a=1'" in text


@pytest.mark.parametrize(("path", "status", "level"), [("/metrics", 200, "DEBUG"), ("/metrics", 401, "WARNING"),
                                                       ("/healthz", 200, "INFO")])  # fmt: skip
def test_metrics_scrapes_are_logged_at_debug(
    caplog: pytest.LogCaptureFixture, path: str, status: int, level: str
):
    with caplog.at_level(logging.DEBUG, logger="tornado.access"):
        access_logger(PROXIES)(_Handler(status, request("10.0.0.5", uri=path)))  # type: ignore[arg-type]
    (rec,) = caplog.records
    assert rec.levelname == level and rec.getMessage().startswith(f"{status} GET {path} ")
