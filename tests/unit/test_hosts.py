"""Which hosts the server answers for and which origins are its own: DNS rebinding, look-alike origins."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import tornado.httputil
import tornado.web

from ticker.errors import OptionError
from ticker.server.app import HostCheckedApplication, MisdirectedHandler
from ticker.server.config import Config
from ticker.server.hosts import (
    HostPolicy,
    all_interfaces_warning,
    allowed_hosts,
    host_policy,
    is_loopback,
    split_host,
)
from ticker.server.peers import request_scheme, trusted_networks

LOOPBACK = host_policy("127.0.0.1")
PROXIES = trusted_networks("10.0.0.0/8")


def request(
    host: str | None, peer: str = "127.0.0.1", path: str = "/", headers: Mapping[str, str] | None = None
) -> tornado.httputil.HTTPServerRequest:
    """A GET of ``path`` with ``Host: host`` (an HTTP/1.0 one without when None) from ``peer``, plus ``headers``."""
    h = tornado.httputil.HTTPHeaders({} if host is None else {"Host": host})
    for name, value in (headers or {}).items():
        h.add(name, value)
    version = "HTTP/1.0" if host is None else "HTTP/1.1"  # Tornado refuses HTTP/1.1 without Host (400)
    line = tornado.httputil.RequestStartLine("GET", path, version)
    req = tornado.httputil.HTTPServerRequest(headers=h, start_line=line)
    req.remote_ip = peer
    return req


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost", ("localhost", None)),
        ("LocalHost:8888", ("localhost", 8888)),
        ("example.com.:443", ("example.com", 443)),
        ("[::1]:8888", ("::1", 8888)),
        ("[::1]", ("::1", None)),
        ("127.0.0.1:", ("127.0.0.1", None)),
        ("::1", None),  # a bare IPv6 address is no Host value
        ("evil.example:8888:1", None),
        ("evil.example:99999", None),
        ("evil.example:0", None),
        ("evil..example", None),
        ("user@evil.example", None),
        ("[evil]:80", None),
        ("[::1]x", None),
        ("a,b", None),
        ("", None),
    ],
)
def test_split_host(text: str, expected: tuple[str, int | None] | None) -> None:
    assert split_host(text) == expected


def test_allowed_hosts_flag_normalizes_and_refuses_garbage() -> None:
    assert allowed_hosts(" Quotes.Example.com, x.test:8443 ,[::1]:80, ::1 ,*,") == frozenset(
        {"quotes.example.com", "x.test:8443", "[::1]:80", "[::1]", "*"}
    )
    assert allowed_hosts("") == frozenset()
    for bad in ("evil/x", "a:b", "http://x.test", "x.test:70000"):
        with pytest.raises(OptionError, match="not a host or host:port"):
            allowed_hosts(bad)


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        *[("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True)],
        *[("10.1.2.3", False), ("0.0.0.0", False), ("quotes.example.com", False)],
    ],
)
def test_is_loopback(listen: str, loopback: bool) -> None:
    assert is_loopback(listen) is loopback


def test_default_on_loopback_is_the_address_and_the_loopback_names_on_any_port() -> None:
    for host in ("127.0.0.1:8888", "localhost:1", "LOCALHOST", "[::1]:8888", "127.0.0.1"):
        assert LOOPBACK.host_ok(host), host
    for host in ("evil.example:8888", "evil.example", "127.0.0.2:8888", "localhost.evil.example", "a,b"):
        assert not LOOPBACK.host_ok(host), host
    assert LOOPBACK.host_ok(None) and LOOPBACK.host_ok("")  # no Host header: no browser sends that


def test_default_on_another_address_is_that_address_only() -> None:
    policy = host_policy("10.1.2.3")
    assert policy.host_ok("10.1.2.3:8888") and not policy.host_ok("localhost:8888")
    named = host_policy("quotes.internal")
    assert named.host_ok("Quotes.Internal:80") and not named.host_ok("10.1.2.3")


def test_all_interfaces_answers_any_host_and_warns_once_unless_told() -> None:
    for listen in ("0.0.0.0", "::", ""):
        policy = host_policy(listen)
        assert policy.any_host and policy.host_ok("evil.example:8888")
        warning = all_interfaces_warning(listen, frozenset())
        assert warning is not None and "--allowed-hosts" in warning and "any host" in warning
    assert all_interfaces_warning("0.0.0.0", frozenset({"*"})) is None
    assert all_interfaces_warning("0.0.0.0", frozenset({"quotes.example.com"})) is None
    assert all_interfaces_warning("127.0.0.1", frozenset()) is None


def test_listed_hosts_replace_the_default() -> None:
    policy = host_policy("0.0.0.0", allowed_hosts("quotes.example.com,x.test:8443"))
    assert not policy.any_host
    assert policy.host_ok("quotes.example.com") and policy.host_ok("quotes.example.com:9999")
    assert (
        policy.host_ok("x.test:8443") and not policy.host_ok("x.test:8444") and not policy.host_ok("x.test")
    )
    assert not policy.host_ok("127.0.0.1:8888") and not policy.host_ok("localhost")
    assert host_policy("127.0.0.1", frozenset({"*"})).host_ok("evil.example")


def test_a_listed_port_matches_a_portless_host_by_the_scheme_default() -> None:
    policy = host_policy("0.0.0.0", allowed_hosts("quotes.example.com:443"))
    assert policy.host_ok("quotes.example.com", "https") and not policy.host_ok("quotes.example.com", "http")


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "ok"),
    [
        ("http://127.0.0.1:8888", "127.0.0.1:8888", "http", True),
        ("HTTP://LOCALHOST:8888/", "localhost:8888", "http", True),
        ("http://localhost:8888", "127.0.0.1:8888", "http", True),  # another allowed host, same port
        ("http://127.0.0.1", "127.0.0.1:80", "http", True),  # default ports filled in
        ("https://127.0.0.1:8888", "127.0.0.1:8888", "http", False),  # https page, http server
        ("chrome-extension://127.0.0.1:8888", "127.0.0.1:8888", "http", False),
        ("ws://127.0.0.1:8888", "127.0.0.1:8888", "http", False),
        ("http://127.0.0.1:8889", "127.0.0.1:8888", "http", False),  # another port
        ("http://127.0.0.1", "127.0.0.1:8888", "http", False),
        ("http://evil.example:8888", "evil.example:8888", "http", False),  # rebinding (Host refused too)
        ("http://evil.example:8888", "127.0.0.1:8888", "http", False),
        ("http://127.0.0.1:8888/path", "127.0.0.1:8888", "http", False),
        ("http://user@127.0.0.1:8888", "127.0.0.1:8888", "http", False),
        ("null", "127.0.0.1:8888", "http", False),
        ("http://127.0.0.1:8888", None, "http", False),
    ],
)
def test_same_origin_compares_scheme_host_and_port(
    origin: str, host: str | None, scheme: str, ok: bool
) -> None:
    assert LOOPBACK.origin_ok(origin, host, scheme) is ok


def test_behind_a_tls_proxy_the_origin_is_https_on_443() -> None:
    policy = host_policy("10.1.2.3", allowed_hosts("quotes.example.com"))
    assert policy.origin_ok("https://quotes.example.com", "quotes.example.com", "https")
    assert not policy.origin_ok("http://quotes.example.com", "quotes.example.com", "https")
    assert not policy.origin_ok("https://quotes.example.com", "quotes.example.com", "http")


def test_any_host_still_needs_the_request_host_in_the_origin() -> None:
    policy = host_policy("0.0.0.0")
    assert policy.origin_ok("http://10.1.2.3:8888", "10.1.2.3:8888", "http")
    assert not policy.origin_ok("http://evil.example:8888", "10.1.2.3:8888", "http")


def test_allowed_origins_are_taken_as_listed() -> None:
    policy = host_policy("127.0.0.1", origins=frozenset({"https://desk.example.com"}))
    assert policy.origin_ok("https://desk.example.com/", "127.0.0.1:8888", "http")
    assert not policy.origin_ok("https://other.example.com", "127.0.0.1:8888", "http")
    assert host_policy("127.0.0.1", origins=frozenset({"*"})).origin_ok("chrome-extension://x", None, "http")


def test_config_builds_the_policy_from_its_flags() -> None:
    cfg = Config(host="0.0.0.0", allowed_hosts=frozenset({"x.test"}), trusted_proxies=PROXIES)
    assert cfg.host_policy == HostPolicy(frozenset({("x.test", None)}), False, frozenset(), PROXIES)
    assert Config().host_policy == LOOPBACK


@pytest.mark.parametrize(
    ("peer", "proto", "expected"),
    [
        ("10.0.0.5", "https", "https"),
        ("10.0.0.5", "http, https", "https"),  # the right-most value: the nearest proxy's
        ("10.0.0.5", "https, http", "http"),
        ("10.0.0.5", "gopher", "http"),
        ("203.0.113.9", "https", "http"),  # an untrusted peer may not say so
    ],
)
def test_request_scheme_trusts_only_trusted_proxies(peer: str, proto: str, expected: str) -> None:
    req = request("quotes.example.com", peer, headers={"X-Forwarded-Proto": proto})
    assert request_scheme(req, PROXIES) == expected
    assert request_scheme(req, ()) == "http"


def test_policy_on_requests_uses_the_forwarded_scheme() -> None:
    policy = host_policy("10.1.2.3", allowed_hosts("quotes.example.com:443"), trusted=PROXIES)
    proxied = request("quotes.example.com", "10.0.0.5", headers={"X-Forwarded-Proto": "https"})
    assert policy.request_ok(proxied)
    assert policy.origin_allowed("https://quotes.example.com", proxied)
    direct = request("quotes.example.com", "203.0.113.9", headers={"X-Forwarded-Proto": "https"})
    assert not policy.request_ok(direct)  # http: port 80 is not listed
    assert not policy.origin_allowed("https://quotes.example.com", direct)


class _Page(tornado.web.RequestHandler):
    pass


@pytest.mark.parametrize(
    ("host", "path", "misdirected"),
    [
        ("evil.example:8888", "/", True),
        ("evil.example:8888", "/ws", True),
        ("evil.example:8888", "/no-such-route", True),
        ("evil.example:8888", "/healthz", False),  # liveness probes address a node by IP
        ("evil.example:8888", "/healthz/", True),
        ("127.0.0.1:8888", "/", False),
        (None, "/", False),
    ],
)
def test_the_application_answers_421_before_any_route(host: str | None, path: str, misdirected: bool) -> None:
    app = HostCheckedApplication([(r"/", _Page), (r"/ws", _Page), (r"/healthz", _Page)], LOOPBACK)
    handler = app.find_handler(request(host, path=path)).handler_class
    assert (handler is MisdirectedHandler) is misdirected
