"""The page's Content-Security-Policy lets it fetch its token from the ``--token-url`` origin, and no more."""

from __future__ import annotations

import pytest

from ticker.server.page import page_csp, token_origin

BASE = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'"
)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://auth.example.com/ticker/token?x=1", "https://auth.example.com"),
        ("HTTP://Auth.Example.com:8443/t", "http://auth.example.com:8443"),
        ("https://user:pw@sso.example.org/t", "https://sso.example.org"),
        ("http://[::1]:9000/token", "http://[::1]:9000"),
        ("/auth/token", None),  # same origin: 'self' covers it
        ("token", None),
        ("ftp://example.com/t", None),
        ("https://evil.example; script-src *", None),
        (None, None),
        ("", None),
    ],
)
def test_token_origin(url: str | None, origin: str | None) -> None:
    assert token_origin(url) == origin


def test_csp_adds_only_the_token_origin_to_connect_src() -> None:
    assert page_csp() == BASE
    assert page_csp("/auth/token") == BASE
    assert page_csp("https://auth.example.com/token") == BASE.replace(
        "connect-src 'self' ws: wss:;", "connect-src 'self' ws: wss: https://auth.example.com;"
    )
