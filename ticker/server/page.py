"""The trader's page: ``web/`` served as static files with a strict Content-Security-Policy, and its
``/config.json`` (how the page signs in)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tornado.web

from ticker.server.node import Node

__all__ = ["ConfigHandler", "PageHandler", "find_web_dir", "page_csp", "page_routes", "token_origin"]

# What an origin in a CSP source list may hold: scheme, host (IPv6 in brackets) and port, nothing else.
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")


def find_web_dir() -> Path:
    """The page's files: ``web/`` beside the package in a checkout, else where ``pip install`` put them."""
    checkout = Path(__file__).resolve().parents[2]
    for cand in (checkout / "web", Path(sys.prefix) / "share" / "ticker" / "web"):
        if (cand / "index.html").is_file():
            return cand
    raise FileNotFoundError("the web page's files (web/index.html) are not installed")


def token_origin(token_url: str | None) -> str | None:
    """The origin (``https://host:port``) of an absolute http(s) ``token_url``; None for a relative one."""
    if not token_url:
        return None
    parts = urlsplit(token_url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    origin = f"{parts.scheme.lower()}://{host}" + (f":{parts.port}" if parts.port is not None else "")
    return origin if _ORIGIN.match(origin) else None


def page_csp(token_url: str | None = None) -> str:
    """The page's Content-Security-Policy; the page may also fetch from ``token_url``'s origin."""
    extra = token_origin(token_url)
    connect = "'self' ws: wss:" + (f" {extra}" if extra else "")
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' data:; connect-src {connect}; frame-ancestors 'none'"
    )


class PageHandler(tornado.web.StaticFileHandler):
    """``GET /``: the trader's page, with a strict Content-Security-Policy."""

    def initialize(self, *args: Any, csp: str | None = None, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.csp = csp or page_csp()

    def parse_url_path(self, url_path: str) -> str:
        """A path holding a NUL or another control character names no file: 404 (not a 500 from the OS)."""
        if any(ord(c) < 0x20 or c == "\x7f" for c in url_path):
            raise tornado.web.HTTPError(404)
        return super().parse_url_path(url_path)

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Content-Security-Policy", self.csp)


class ConfigHandler(tornado.web.RequestHandler):
    """``GET /config.json``: what the page needs before it connects (public, never cached)."""

    def initialize(self, body: dict[str, Any]) -> None:
        self.body = body

    def get(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.write(self.body)  # a dict: written as JSON with its content type


def page_routes(server: Node) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    """``/config.json``, ``/`` and ``/static/*`` of ``server``'s page."""
    access = server.config.access
    web = str(find_web_dir())
    csp = page_csp(access.token_url)
    body = {"auth": access.auth, "token_url": access.token_url, "delay": access.delay}
    return [
        (r"/config.json", ConfigHandler, {"body": body}),
        (r"/()", PageHandler, {"path": web, "default_filename": "index.html", "csp": csp}),
        (r"/static/(.*)", PageHandler, {"path": web, "csp": csp}),
    ]
