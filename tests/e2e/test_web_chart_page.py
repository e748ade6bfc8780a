"""The page's detail panel and chart, the wide-screen day columns and the price flash, in headless Chromium
against a real ``ticker serve`` (simulated feed, which backfills a session of 1m bars)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, WebSocket, WebSocketRoute, expect

from tests.support.pagekit import ms, scale_timeouts
from tests.support.serverproc import ServerProcess

FIELDS = ["p", "b", "a", "v", "c", "cp", "o", "h", "l", "pc", "vw", "t"]
NUMBER = re.compile(r"^[+\-−]?\d[\d,.]*[KMB%]?$")
WIDE: ViewportSize = {"width": 1440, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
PHONE_HIDDEN = ["col-chg", "col-bid", "col-ask", "col-vol", "col-time", "col-open", "col-high", "col-low"]

# Set before the page's own scripts run: CSP violations are collected (the console shows them too).
WATCH_CSP = (
    "window.__csp = []; document.addEventListener('securitypolicyviolation',"
    " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
)


class PageWatch:
    """Console errors, uncaught exceptions and the socket frames the page sends."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.sent: list[dict[str, Any]] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("websocket", self._socket)
        page.add_init_script(WATCH_CSP)

    def _socket(self, ws: WebSocket) -> None:
        ws.on("framesent", self._sent)

    def _sent(self, payload: str | bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            return
        if isinstance(msg, dict) and str(msg.get("op", "")).endswith("_bars"):
            self.sent.append(msg)

    def assert_clean(self) -> None:
        assert self.errors == []
        assert self.page.evaluate("window.__csp") == []


@pytest.fixture
def watch(page: Page) -> PageWatch:
    return PageWatch(page)


def open_page(page: Page, srv: ServerProcess, query: str = "") -> None:
    page.goto(f"{srv.url}/{query}")
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
    page.wait_for_function("() => document.querySelectorAll('#rows tr.waiting').length === 0")


def chart(page: Page) -> dict[str, str]:
    return page.get_by_test_id("detail-chart").evaluate("el => ({...el.dataset})")


def wait_history(page: Page, interval: str, at_least: int = 2) -> dict[str, str]:
    """Wait until the chart holds ``interval``'s history (at least ``at_least`` candles)."""
    page.wait_for_function(
        "([iv, n]) => { const d = document.querySelector('[data-testid=detail-chart]').dataset;"
        " return d.interval === iv && d.state === 'ready' && Number(d.bars) >= n; }",
        arg=[interval, at_least],
        timeout=ms(10),
    )
    return chart(page)


def wait_live_bar(page: Page, within: float = 10.0) -> None:
    """Wait until a live bar changes the chart's newest candle (its close, its start or the count)."""
    before = chart(page)
    page.wait_for_function(
        "(b) => { const d = document.querySelector('[data-testid=detail-chart]').dataset;"
        " return d.lastC !== b.lastC || d.lastT !== b.lastT || d.bars !== b.bars; }",
        arg=before,
        timeout=ms(within),
    )


def panel_open(page: Page, sym: str) -> None:
    panel = page.get_by_test_id("detail-panel")
    expect(panel).to_be_visible()
    expect(panel.locator(".detail-sym")).to_have_text(sym)
    assert page.evaluate("document.getElementById('detail').contains(document.activeElement)")


def test_click_opens_the_panel_with_every_field_and_a_live_chart(
    page: Page, server: ServerProcess, watch: PageWatch
) -> None:
    page.set_viewport_size(WIDE)
    open_page(page, server)
    row = page.get_by_test_id("row-AAPL")
    # Wide screens: open, high, low and the day-range bar, the price marked between low and high.
    for col in ("Open", "High", "Low"):
        expect(page.get_by_role("button", name=col, exact=True)).to_be_visible()
    for cls in ("col-open", "col-high", "col-low"):
        expect(row.locator(f".{cls}")).to_have_text(NUMBER)
    day_range = row.get_by_test_id("day-range")
    expect(day_range).to_be_visible()
    expect(day_range).to_have_attribute("data-pos", re.compile(r"^\d+(\.5)?$"))
    assert 0 <= float(day_range.get_attribute("data-pos") or "-1") <= 100

    row.locator(".col-chg").click()
    panel_open(page, "AAPL")
    assert page.url.endswith("/?s=AAPL&i=1m")
    expect(page.get_by_test_id("detail-name")).to_have_text("Apple Inc.")
    expect(page.get_by_test_id("detail-exchange")).not_to_be_empty()
    expect(page.get_by_test_id("detail-state")).to_have_text("Live")
    for key in FIELDS:
        expect(page.get_by_test_id(f"detail-field-{key}")).not_to_have_text("—")
    expect(page.get_by_test_id("detail-field-p")).to_have_text(NUMBER)
    expect(page.get_by_test_id("detail-interval-1m")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_text("TradingView Lightweight Charts™")).to_be_visible()  # the licence's attribution

    # The history: the simulated market backfilled this session's 1m bars.
    got = wait_history(page, "1m", at_least=30)
    assert int(got["lastT"]) % 60_000 == 0
    assert watch.sent == [{"op": "subscribe_bars", "symbol": "AAPL", "interval": "1m", "history": 1440}]
    wait_live_bar(page)

    page.keyboard.press("Escape")
    expect(page.get_by_test_id("detail-panel")).to_be_hidden()
    expect(row).to_be_focused()  # the focus goes back to the row
    assert "s=" not in page.url
    assert watch.sent[-1] == {"op": "unsubscribe_bars", "symbol": "AAPL", "interval": "1m"}
    watch.assert_clean()


def test_keyboard_opens_and_closes_the_panel(page: Page, server: ServerProcess, watch: PageWatch) -> None:
    open_page(page, server)
    page.get_by_test_id("row-AAPL").focus()
    page.keyboard.press("ArrowDown")  # rows are focusable and the arrows move between them
    expect(page.get_by_test_id("row-MSFT")).to_be_focused()
    page.keyboard.press("Enter")
    panel_open(page, "MSFT")
    expect(page.get_by_test_id("row-MSFT")).to_have_attribute("aria-expanded", "true")
    wait_history(page, "1m")
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("detail-close")).to_be_focused()
    page.keyboard.press("Enter")  # the close button
    expect(page.get_by_test_id("detail-panel")).to_be_hidden()
    expect(page.get_by_test_id("row-MSFT")).to_be_focused()
    expect(page.get_by_test_id("row-MSFT")).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Enter")  # again, and Escape this time
    panel_open(page, "MSFT")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("detail-panel")).to_be_hidden()
    expect(page.get_by_test_id("row-MSFT")).to_be_focused()
    # Enter on a row's remove button removes it and opens nothing.
    page.get_by_test_id("remove-SPY").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("row-SPY")).to_have_count(0)
    expect(page.get_by_test_id("detail-panel")).to_be_hidden()
    watch.assert_clean()


def test_a_link_opens_the_panel_and_the_interval_switch_reloads(
    page: Page, server: ServerProcess, watch: PageWatch
) -> None:
    open_page(page, server, "?symbols=KO,MSFT&s=PEP&i=5m")
    panel_open(page, "PEP")  # the linked symbol joins the watchlist and its panel opens
    rows = page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.symbol)")
    assert rows == ["KO", "MSFT", "PEP"]
    expect(page.get_by_test_id("detail-interval-5m")).to_have_attribute("aria-pressed", "true")
    got = wait_history(page, "5m")
    assert int(got["lastT"]) % 300_000 == 0
    five_minute_bars = int(got["bars"])

    page.get_by_test_id("detail-interval-1h").click()
    expect(page.get_by_test_id("detail-interval-1h")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("detail-interval-5m")).to_have_attribute("aria-pressed", "false")
    got = wait_history(page, "1h", at_least=1)
    assert int(got["lastT"]) % 3_600_000 == 0
    assert int(got["bars"]) < five_minute_bars  # a new history, not the 5m one
    assert "s=PEP&i=1h" in page.url and "symbols=KO,MSFT,PEP" in page.url
    assert watch.sent == [
        {"op": "subscribe_bars", "symbol": "PEP", "interval": "5m", "history": 576},
        {"op": "unsubscribe_bars", "symbol": "PEP", "interval": "5m"},
        {"op": "subscribe_bars", "symbol": "PEP", "interval": "1h", "history": 336},
    ]
    page.get_by_test_id("detail-interval-1m").click()
    wait_history(page, "1m", at_least=30)
    wait_live_bar(page)

    # Another row's click moves the panel (and its one bars subscription) to that symbol.
    page.get_by_test_id("row-KO").locator(".col-symbol").click()
    panel_open(page, "KO")
    wait_history(page, "1m")
    assert watch.sent[-2:] == [
        {"op": "unsubscribe_bars", "symbol": "PEP", "interval": "1m"},
        {"op": "subscribe_bars", "symbol": "KO", "interval": "1m", "history": 1440},
    ]
    # Reloaded, the URL opens the same panel.
    page.reload()
    panel_open(page, "KO")
    wait_history(page, "1m")
    watch.assert_clean()


def test_a_later_bars_replaces_the_chart_and_a_subscription_the_server_ends_says_so(
    page: Page, server: ServerProcess, watch: PageWatch
) -> None:
    routes: list[WebSocketRoute] = []

    def through(ws: WebSocketRoute) -> None:  # the real server's socket, with messages the test adds
        ws.connect_to_server()
        routes.append(ws)

    page.route_web_socket(re.compile(r"/ws(\?|$)"), through)
    open_page(page, server, "?symbols=AAPL&s=AAPL&i=1m")
    panel_open(page, "AAPL")
    wait_history(page, "1m", at_least=30)
    # One more `bars` (history that arrived late): it replaces the chart's bars.
    now = int(time.time() * 1000) // 60_000 * 60_000
    late = [{"t": now - k * 60_000, "o": 10, "h": 11, "l": 9, "c": 10.5, "v": 100} for k in (3, 2, 1)]
    routes[-1].send(
        json.dumps({"type": "bars", "s": "AAPL", "interval": "1m", "delayed": False, "data": late})
    )
    page.wait_for_function(
        "() => { const d = document.querySelector('[data-testid=detail-chart]').dataset;"
        " return d.state === 'ready' && Number(d.bars) <= 4; }",
        timeout=ms(10),
    )
    # A `bars_unsubscribed` the page did not ask for: the panel says the chart is no longer live, and the
    # live bars still on their way (the server did not really end it) do not hide that.
    routes[-1].send(json.dumps({"type": "bars_unsubscribed", "s": "AAPL", "interval": "1m"}))
    expect(page.get_by_test_id("detail-chart")).to_have_attribute("data-state", "ended")
    note = page.locator(".chart-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("ended")
    page.wait_for_function("(n) => window.tickerStats.bars > n", arg=page.evaluate("window.tickerStats.bars"))
    expect(page.get_by_test_id("detail-chart")).to_have_attribute("data-state", "ended")
    # The interval's button subscribes again; the answer to the page's own unsubscribe_bars ends nothing.
    page.get_by_test_id("detail-interval-1m").click()
    wait_history(page, "1m", at_least=30)
    expect(note).to_be_hidden()
    assert watch.sent[-2:] == [
        {"op": "unsubscribe_bars", "symbol": "AAPL", "interval": "1m"},
        {"op": "subscribe_bars", "symbol": "AAPL", "interval": "1m", "history": 1440},
    ]
    wait_live_bar(page)
    expect(page.get_by_test_id("detail-chart")).to_have_attribute("data-state", "ready")
    watch.assert_clean()


def test_phone_shows_every_field_in_a_full_sheet(browser: Browser, server: ServerProcess) -> None:
    ctx = browser.new_context(locale="en-US", viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = ctx.new_page()
        scale_timeouts(page)
        watch = PageWatch(page)
        open_page(page, server)
        row = page.get_by_test_id("row-TSLA")
        for cls in PHONE_HIDDEN:
            expect(row.locator(f".{cls}")).to_be_hidden()  # hidden in the table ...
        expect(row.get_by_test_id("day-range")).to_be_hidden()
        row.locator(".col-last").tap()
        panel_open(page, "TSLA")
        box = page.get_by_test_id("detail-panel").bounding_box()
        assert box is not None and box["x"] == 0 and box["width"] == PHONE["width"]  # a full sheet
        for key in FIELDS:  # ... and all in the panel
            field = page.get_by_test_id(f"detail-field-{key}")
            field.scroll_into_view_if_needed()
            expect(field).to_be_visible()
            expect(field).not_to_have_text("—")
        page.get_by_test_id("detail-chart").scroll_into_view_if_needed()
        expect(page.get_by_test_id("detail-chart")).to_be_visible()
        wait_history(page, "1m", at_least=30)
        page.get_by_test_id("detail-close").tap()
        expect(page.get_by_test_id("detail-panel")).to_be_hidden()
        watch.assert_clean()
    finally:
        ctx.close()


FLASH_JS = """(ms) => new Promise(done => {
  const on = new Map(), flashes = [], others = [];
  const obs = new MutationObserver(records => {
    const now = performance.now();
    for (const r of records) {
      const el = r.target;
      if (el.dataset.flash) {
        if (!el.matches('td.col-last')) others.push(el.outerHTML.slice(0, 80));
        if (!on.has(el)) on.set(el, now);
        // Nothing else of the row is tinted: its background and its other cells' stay clear.
        const row = el.closest('tr');
        const clear = (x) => ['rgba(0, 0, 0, 0)', 'transparent'].includes(getComputedStyle(x).backgroundColor);
        if (!row.matches(':hover') && !row.classList.contains('open') && !clear(row)) others.push('row ' + row.dataset.symbol);
        for (const td of row.querySelectorAll('td:not(.col-last)')) if (!clear(td)) others.push(td.className);
      } else if (on.has(el)) {
        flashes.push(now - on.get(el));
        on.delete(el);
      }
    }
  });
  obs.observe(document.getElementById('rows'), { subtree: true, attributes: true, attributeFilter: ['data-flash'] });
  setTimeout(() => { obs.disconnect(); done({ flashes, others }); }, ms);
})"""


def test_the_flash_is_short_and_on_the_price_cell_only(
    page: Page, browser: Browser, watch: PageWatch
) -> None:
    symbols = [f"FL{i:02d}" for i in range(30)]
    with ServerProcess(["--seed", "5", "--sim-rate", "2", "--symbols", ",".join(symbols)]) as srv:
        open_page(page, srv, "?symbols=" + ",".join(symbols))
        got: dict[str, Any] = page.evaluate(FLASH_JS, 3000)
    assert got["others"] == []
    flashes = sorted(got["flashes"])
    assert len(flashes) >= 30, flashes  # 30 rows at 2 ticks/s for 3 s
    assert flashes[len(flashes) // 2] <= 400, flashes  # short: a quarter of a second (plus a frame or two)
    watch.assert_clean()


@pytest.fixture
def narrow_page(browser: Browser) -> Iterator[Page]:
    ctx = browser.new_context(locale="en-US", viewport={"width": 1000, "height": 800})
    pg = ctx.new_page()
    scale_timeouts(pg)
    yield pg
    ctx.close()


def test_day_columns_only_on_wide_screens(narrow_page: Page, server: ServerProcess) -> None:
    open_page(narrow_page, server)
    row = narrow_page.get_by_test_id("row-AAPL")
    for cls in ("col-open", "col-high", "col-low", "col-range"):
        expect(row.locator(f".{cls}")).to_be_hidden()
    expect(row.locator(".col-bid")).to_be_visible()
    narrow_page.set_viewport_size(WIDE)
    for cls in ("col-open", "col-high", "col-low", "col-range"):
        expect(row.locator(f".{cls}")).to_be_visible()
