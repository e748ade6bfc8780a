"""The trader's page: ``web/`` served as static files with a strict Content-Security-Policy."""

from __future__ import annotations

import sys
from pathlib import Path

import tornado.web


def find_web_dir() -> Path:
    """The page's files: ``web/`` beside the package in a checkout, else where ``pip install`` put them."""
    checkout = Path(__file__).resolve().parents[2]
    for cand in (checkout / "web", Path(sys.prefix) / "share" / "ticker" / "web"):
        if (cand / "index.html").is_file():
            return cand
    raise FileNotFoundError("the web page's files (web/index.html) are not installed")


class PageHandler(tornado.web.StaticFileHandler):
    """``GET /``: the trader's page, with a strict Content-Security-Policy."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-cache")
        self.set_header(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'",
        )
