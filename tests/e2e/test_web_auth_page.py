"""The trader's page against ``ticker serve --auth jwt`` in real Chromium.

The deployer's token endpoint is a small aiohttp server on another origin (its own port), run in a
thread: it answers ``{"token": ...}`` to a browser carrying its ``session`` cookie and 401 otherwise,
with CORS headers that let the page's origin read it with credentials.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import web
from playwright.sync_api import Browser, BrowserContext, Page, WebSocket, expect

from tests.support.fakes.local_http import start_app
from tests.support.pagekit import ms, scale_timeouts
from tests.support.serverproc import ServerProcess
from tests.support.timing import eventually_sync, timeout

SECRET = secrets.token_hex(32)
SIM = ["--seed", "7", "--sim-rate", "8", "--log-level", "warning"]
LIVE_PRICE = re.compile(r"\d")
DELAY = 2  # --delay of delayed_server


@dataclass
class Issued:
    """One token the endpoint handed out."""

    at: float
    sub: str
    exp: int
    token: str


@dataclass
class TokenEndpoint:
    """The deployer's token endpoint: ``GET /token`` with the ``session`` cookie → a token for that user."""

    port: int = 0
    #: The pages' origins, the ones allowed to read the answers (added once each server listens).
    page_origins: set[str] = field(default_factory=set)
    ticker_claim: dict[str, Any] | None = None
    #: Per sub, the ``ticker`` claim of each token handed out in turn (the last repeats); else ``ticker_claim``.
    plans: dict[str, list[dict[str, Any] | None]] = field(default_factory=dict)
    ttl: int = 3600
    issued: list[Issued] = field(default_factory=list)
    refused: int = 0
    #: How many of the next tokens to sign with another key (the server refuses them).
    forged: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def reset(
        self,
        ticker_claim: dict[str, Any] | None = None,
        ttl: int = 3600,
        plans: dict[str, list[dict[str, Any] | None]] | None = None,
    ) -> None:
        self.ticker_claim, self.ttl, self.plans = ticker_claim, ttl, plans or {}
        self.issued, self.refused, self.forged = [], 0, 0

    async def _token(self, request: web.Request) -> web.Response:
        origin = request.headers.get("Origin", "")
        headers = {"Cache-Control": "no-store", "Vary": "Origin"}
        if origin in self.page_origins:
            headers |= {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true"}
        sub = request.cookies.get("session")
        if not sub:
            self.refused += 1
            return web.json_response({"error": "sign in first"}, status=401, headers=headers)
        now = int(time.time())
        claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + self.ttl}
        claim, plan = self.ticker_claim, self.plans.get(sub)
        if plan:
            claim = plan[min(sum(1 for i in self.issued if i.sub == sub), len(plan) - 1)]
        if claim is not None:
            claims["ticker"] = claim
        key = SECRET
        if self.forged > 0:
            self.forged -= 1
            key = secrets.token_hex(32)
        token = jwt.encode(claims, key, algorithm="HS256")
        self.issued.append(Issued(time.time(), sub, claims["exp"], token))
        return web.json_response({"token": token}, headers=headers)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/token", self._token)
        self._runner, self.port = await start_app(app)

    def __enter__(self) -> TokenEndpoint:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout(10))
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None and self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout(10))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout(10))
        self._loop.close()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[TokenEndpoint]:
    with TokenEndpoint() as ep:
        yield ep


@pytest.fixture(scope="module")
def server(endpoint: TokenEndpoint) -> Iterator[ServerProcess]:
    args = [*SIM, "--auth", "jwt", "--token-url", endpoint.url]  # the default --delay: 900 s
    with ServerProcess(args, env={"TICKER_JWT_SECRET": SECRET}) as srv:
        endpoint.page_origins.add(srv.url)
        yield srv


@pytest.fixture(scope="module")
def delayed_server(endpoint: TokenEndpoint) -> Iterator[ServerProcess]:
    """Like ``server``, with a delayed tier of ``DELAY`` seconds."""
    args = [*SIM, "--auth", "jwt", "--token-url", endpoint.url, "--delay", str(DELAY)]
    with ServerProcess(args, env={"TICKER_JWT_SECRET": SECRET}) as srv:
        endpoint.page_origins.add(srv.url)
        yield srv


@pytest.fixture
def context(context: BrowserContext, endpoint: TokenEndpoint) -> BrowserContext:
    """The conftest's context, with the endpoint's settings and counts reset for the test."""
    endpoint.reset()
    return context


class Sockets:
    """Every WebSocket the page opens, and the JSON ops it sends and the message types it receives."""

    def __init__(self, page: Page) -> None:
        self.opened: list[WebSocket] = []
        self.sent: list[str] = []
        self.received: list[str] = []
        self.exceptions: list[str] = []
        page.on("websocket", self._on_socket)
        page.on("pageerror", lambda exc: self.exceptions.append(str(exc)))

    def _on_socket(self, ws: WebSocket) -> None:
        self.opened.append(ws)
        ws.on("framesent", lambda payload: self.sent.append(str(payload)))
        ws.on("framereceived", lambda payload: self.received.append(str(payload)))

    def until(self, page: Page, cond: Callable[[], bool], within: float, what: str) -> None:
        """Wait for ``cond``, letting Playwright deliver the page's events meanwhile (a plain sleep does not)."""
        eventually_sync(lambda: page.evaluate("true") and cond(), within, what)

    def ops(self, op: str) -> list[str]:
        return [f for f in self.sent if f'"op":"{op}"' in f]

    def types(self, kind: str) -> list[str]:
        return [f for f in self.received if f'"type":"{kind}"' in f]


def sign_in(context: BrowserContext, endpoint: TokenEndpoint, user: str = "alice") -> None:
    """What signing in at the deployer's site leaves behind: a session cookie for the endpoint's host."""
    context.add_cookies([{"name": "session", "value": user, "url": endpoint.url}])


def expect_live(page: Page) -> None:
    status = page.get_by_test_id("conn-status")
    expect(status).to_have_attribute("data-state", "connected")
    expect(status).to_have_text("Live")


def record_pill(page: Page) -> None:
    """Keep every change of the pill (state and text) in ``window.__pill`` from now on."""
    page.evaluate(
        """() => {
          const el = document.querySelector('[data-testid=conn-status]');
          const now = () => `${el.dataset.state}:${el.textContent.trim()}`;
          window.__pill = [now()];
          new MutationObserver(() => {
            if (window.__pill[window.__pill.length - 1] !== now()) window.__pill.push(now());
          }).observe(el, { attributes: true, childList: true, subtree: true, characterData: true });
        }"""
    )


def test_delayed_symbols_wear_the_badge(
    page: Page, context: BrowserContext, endpoint: TokenEndpoint, server: ServerProcess
) -> None:
    endpoint.reset({"realtime": ["AAPL"], "delayed": ["*"]})
    sign_in(context, endpoint)
    sockets = Sockets(page)
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{server.url}/?symbols=AAPL,MSFT")
    expect_live(page)
    aapl, msft = page.get_by_test_id("row-AAPL"), page.get_by_test_id("row-MSFT")
    badge = msft.get_by_test_id("delayed-badge")
    expect(badge).to_be_visible()
    expect(badge).to_have_text("Delayed 15 min")
    expect(aapl.get_by_test_id("delayed-badge")).to_be_hidden()
    expect(page.get_by_test_id("price-AAPL")).to_have_attribute("data-value", LIVE_PRICE)
    # A fresh server has no MSFT quote 15 minutes old yet, and a delayed row never shows a newer one.
    expect(msft).to_have_class(re.compile(r"\bwaiting\b"))
    # One token, sent as the socket's first message; the names came from /api/symbols/<SYMBOL> with it.
    assert [i.sub for i in endpoint.issued] == ["alice"]
    assert sockets.sent[0] == f'{{"op":"auth","token":"{endpoint.issued[0].token}"}}'
    expect(aapl.get_by_test_id("row-name")).to_have_text("Apple Inc.")
    assert not page.get_by_test_id("sign-in-required").is_visible()
    assert console == [] and sockets.exceptions == []


def test_forbidden_symbols_leave_the_watchlist(
    page: Page, context: BrowserContext, endpoint: TokenEndpoint, server: ServerProcess
) -> None:
    endpoint.reset({"realtime": ["AAPL"], "delayed": ["MSFT"]})
    sign_in(context, endpoint)
    page.goto(f"{server.url}/?symbols=AAPL,NFLX,MSFT")
    expect_live(page)
    expect(page.get_by_test_id("row-NFLX")).to_have_count(0)
    expect(page.locator("#message")).to_contain_text("NFLX")
    assert page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.symbol)") == [
        "AAPL",
        "MSFT",
    ]
    assert page.url.endswith("?symbols=AAPL,MSFT")
    page.get_by_test_id("symbol-input").fill("TSLA")
    page.get_by_test_id("add-symbol").click()
    expect(page.locator("#message")).to_contain_text("Not added: TSLA.")
    expect(page.get_by_test_id("row-TSLA")).to_have_count(0)
    expect(page.get_by_test_id("row-MSFT").get_by_test_id("delayed-badge")).to_have_text("Delayed 15 min")


def test_a_row_moved_to_the_delayed_tier_wears_the_badge_and_keeps_updating(
    browser: Browser,
    page: Page,
    context: BrowserContext,
    endpoint: TokenEndpoint,
    delayed_server: ServerProcess,
) -> None:
    # Alice's first token is real-time for everything; the one of the refresh (about 3 s later) delays all.
    endpoint.reset(ttl=8, plans={"alice": [None, {"delayed": ["*"]}], "witness": [{"delayed": ["AAPL"]}]})
    url = f"{delayed_server.url}/?symbols=AAPL"
    witness_ctx = browser.new_context(locale="en-US")
    try:
        # Someone already receives AAPL delayed: the server holds its past values, so alice's snapshot at
        # the move and the delayed quotes after it carry a `q` below the real-time ones she has seen.
        sign_in(witness_ctx, endpoint, "witness")
        witness = witness_ctx.new_page()
        scale_timeouts(witness, actions=10.0, assertions=5.0 + DELAY)
        witness.goto(url)
        expect(witness.get_by_test_id("price-AAPL")).to_have_attribute("data-value", LIVE_PRICE)
        sign_in(context, endpoint)
        sockets = Sockets(page)
        page.goto(url)
        expect_live(page)
        badge = page.get_by_test_id("row-AAPL").get_by_test_id("delayed-badge")
        expect(page.get_by_test_id("price-AAPL")).to_have_attribute("data-value", LIVE_PRICE)
        expect(badge).to_be_hidden()
        # Every time shown in the row from now on (the quote's own `t`, to the second).
        page.evaluate(
            """() => {
              const cell = document.querySelector('[data-testid=row-AAPL] .col-time');
              const badge = document.querySelector('[data-testid=row-AAPL] [data-testid=delayed-badge]');
              window.__times = [];
              new MutationObserver(() => window.__times.push([!badge.hidden, cell.textContent])).observe(
                cell, { childList: true, subtree: true, characterData: true });
            }"""
        )
        expect(badge).to_be_visible(timeout=ms(15))
        expect(badge).to_have_text(f"Delayed {DELAY} s")
        # The row keeps updating once delayed: three more times shown.
        page.wait_for_function(
            "() => window.__times.filter(([delayed]) => delayed).length >= 3", timeout=ms(10)
        )
        times: list[tuple[bool, str]] = [(bool(d), str(t)) for d, t in page.evaluate("window.__times")]
        assert sockets.exceptions == [] and len(sockets.opened) == 1 and len(sockets.ops("refresh")) >= 1
    finally:
        witness_ctx.close()
    before = [seconds_of_day(t) for d, t in times if not d]
    after = [seconds_of_day(t) for d, t in times if d]
    assert before and after, times
    # Delayed values older than the last real-time one were shown: they were not dropped as old.
    assert any(1 <= (before[-1] - t) % 86400 <= DELAY + 2 for t in after), times


def seconds_of_day(text: str) -> int:
    h, m, s = (int(x) for x in text.split(":"))
    return h * 3600 + m * 60 + s


def test_sign_in_required_until_the_endpoint_gives_a_token(
    page: Page, context: BrowserContext, endpoint: TokenEndpoint, server: ServerProcess
) -> None:
    sockets = Sockets(page)
    page.goto(f"{server.url}/?symbols=AAPL")
    notice = page.get_by_test_id("sign-in-required")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Sign-in required")
    status = page.get_by_test_id("conn-status")
    expect(status).to_have_text("Sign-in required")
    assert endpoint.refused >= 1 and endpoint.issued == []
    assert sockets.opened == []  # no token, no socket
    sign_in(context, endpoint, "bob")  # in another tab, say; then the user asks the page to try again
    page.get_by_role("button", name="Try again").click()
    expect_live(page)
    expect(notice).to_be_hidden()
    expect(page.get_by_test_id("price-AAPL")).to_have_attribute("data-value", LIVE_PRICE)
    assert [i.sub for i in endpoint.issued] == ["bob"] and len(sockets.opened) == 1
    assert sockets.exceptions == []


def live_on_short_tokens(
    page: Page, context: BrowserContext, endpoint: TokenEndpoint, server: ServerProcess
) -> Sockets:
    """Alice signed in with 8 s tokens, the page live on AAPL, every change of its pill recorded."""
    endpoint.reset(ttl=8)
    sign_in(context, endpoint)
    sockets = Sockets(page)
    page.goto(f"{server.url}/?symbols=AAPL")
    expect_live(page)
    record_pill(page)
    return sockets


def assert_still_live_on_one_socket(page: Page, sockets: Sockets) -> None:
    """Quotes still flow, on the page's first and only socket, and the pill never left Live."""
    before = page.get_by_test_id("price-AAPL").get_attribute("data-value")
    page.wait_for_function(
        "before => document.querySelector('[data-testid=price-AAPL]').dataset.value !== before",
        arg=before,
        timeout=ms(10),
    )
    assert len(sockets.opened) == 1 and not sockets.opened[0].is_closed()
    assert page.evaluate("window.__pill") == ["connected:Live"]
    assert sockets.exceptions == []


def test_short_lived_token_is_refreshed_on_the_live_socket(
    page: Page, context: BrowserContext, endpoint: TokenEndpoint, server: ServerProcess
) -> None:
    sockets = live_on_short_tokens(page, context, endpoint, server)
    first_exp = endpoint.issued[0].exp
    # Each 8 s token is renewed about 5 s before it expires: by the fifth one the first has long expired.
    eventually_sync(lambda: len(endpoint.issued) >= 5, 25.0, "five tokens from the endpoint")
    assert endpoint.issued[-1].at > first_exp + 2
    sockets.until(page, lambda: len(sockets.ops("refresh")) >= 4, 5.0, "the page to send four refreshes")
    tokens = [i.token for i in endpoint.issued]
    for frame, token in zip(sockets.ops("refresh")[:4], tokens[1:5], strict=True):
        assert f'"token":"{token}"' in frame
    # The auth, then one answer per refresh.
    sockets.until(
        page, lambda: len(sockets.types("authenticated")) >= 5, 5.0, "the server to answer each refresh"
    )
    assert_still_live_on_one_socket(page, sockets)  # well past the first token's exp


def test_a_refused_refresh_keeps_the_token_and_tries_again(
    page: Page, context: BrowserContext, endpoint: TokenEndpoint, server: ServerProcess
) -> None:
    sockets = live_on_short_tokens(page, context, endpoint, server)
    endpoint.forged = 1  # the token of the first refresh (about 3 s in) is signed with another key
    sockets.until(page, lambda: len(sockets.ops("refresh")) >= 2, 15.0, "a refresh after the refused one")
    first, forged, good = endpoint.issued[:3]
    refreshes = sockets.ops("refresh")
    assert f'"token":"{forged.token}"' in refreshes[0] and f'"token":"{good.token}"' in refreshes[1]
    assert any('"code":"unauthorized"' in f for f in sockets.types("error"))
    # Asked again soon (a backoff of a second or so), not at the next planned refresh.
    assert good.at - forged.at < timeout(3.0)
    sockets.until(
        page, lambda: len(sockets.types("authenticated")) >= 2, 5.0, "the good refresh to be accepted"
    )
    # Well past the first token's expiry: the same socket, still live, quotes still flowing.
    eventually_sync(lambda: time.time() > first.exp + 2, 15.0, "the first token to have expired")
    assert_still_live_on_one_socket(page, sockets)


def test_without_auth_the_page_asks_nothing_more_than_its_config(page: Page) -> None:
    with ServerProcess(SIM) as srv:
        requested: list[str] = []
        page.on("request", lambda req: requested.append(req.url))
        sockets = Sockets(page)
        page.goto(f"{srv.url}/?symbols=AAPL")
        expect_live(page)
        expect(page.get_by_test_id("price-AAPL")).to_have_attribute("data-value", LIVE_PRICE)
        expect(page.get_by_test_id("row-AAPL").get_by_test_id("row-name")).to_have_text("Apple Inc.")
        paths = sorted({u.removeprefix(srv.url) for u in requested if not u.startswith("data:")})
        assert all(u.startswith("/") for u in paths), paths  # nothing from another origin
        assert [p for p in paths if not p.startswith("/static/")] == [
            "/?symbols=AAPL",
            "/api/symbols/AAPL",
            "/config.json",
        ]
        assert sockets.ops("auth") == [] and sockets.sent[0] == '{"op":"subscribe","symbols":["AAPL"]}'
        assert not page.get_by_test_id("sign-in-required").is_visible()
        assert page.get_by_test_id("row-AAPL").get_by_test_id("delayed-badge").is_hidden()
