"""The trader's page in a real headless Chromium against a real ``ticker serve`` (simulated feed)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.support.pagekit import ms, scale_timeouts
from tests.support.serverproc import ServerProcess, scrape
from tests.support.timing import eventually_sync
from ticker.errors import InvalidSymbol
from ticker.symbols import normalize_symbol

DEFAULT_ROWS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "SPY"]
SIM = ["--seed", "7", "--sim-rate", "8", "--log-level", "warning"]


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    """A server of its own per test: subscription counts in /metrics then belong to the test's page."""
    with ServerProcess(SIM) as srv:
        yield srv


class Console:
    """Console errors and uncaught exceptions of one page."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.exceptions: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.exceptions.append(str(exc)))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(msg.text)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    ctx = browser.new_context(locale="en-US", viewport={"width": 1200, "height": 900})
    pg = ctx.new_page()
    scale_timeouts(pg, actions=10.0, assertions=5.0)
    yield pg
    ctx.close()


@pytest.fixture
def console(page: Page) -> Console:
    return Console(page)


def row_symbols(page: Page) -> list[str]:
    return page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.symbol)")


def price(page: Page, sym: str) -> float:
    v = page.get_by_test_id(f"price-{sym}").get_attribute("data-value")
    assert v, f"{sym} shows no price"
    return float(v)


def wait_price_change(page: Page, sym: str, within: float = 10.0) -> None:
    """Wait until ``sym``'s price shows a value different from the one shown now (or shows one at all)."""
    before = page.get_by_test_id(f"price-{sym}").get_attribute("data-value")
    page.wait_for_function(
        "([sym, before]) => { const v = document.querySelector(`[data-testid='price-${sym}']`).dataset.value;"
        " return v !== undefined && v !== before; }",
        arg=[sym, before],
        timeout=ms(within),
    )


def metric(srv: ServerProcess, name: str) -> float:
    return scrape(srv.url)[name]


def open_page(page: Page, srv: ServerProcess, query: str = "") -> None:
    page.goto(f"{srv.url}/{query}")
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")


def test_page_loads_live_with_no_console_errors(page: Page, server: ServerProcess, console: Console) -> None:
    open_page(page, server)
    assert row_symbols(page) == DEFAULT_ROWS  # the first visit's default watchlist
    for sym in DEFAULT_ROWS:
        expect(page.get_by_test_id(f"price-{sym}")).to_have_text(re.compile(r"^\d[\d,]*\.\d{2,4}$"))
    wait_price_change(page, "AAPL")
    expect(page.get_by_test_id("row-AAPL")).to_have_class(re.compile(r"^(?!.*\b(stale|waiting)\b)"))
    expect(page.locator("#latency")).to_have_text(re.compile(r"^latency \d+ ms$"))
    # Company names come from the directory (/api/symbols/<SYMBOL>).
    expect(page.get_by_test_id("row-AAPL").get_by_test_id("row-name")).to_have_text("Apple Inc.")
    assert console.errors == []
    assert console.exceptions == []


def test_add_and_remove_symbols(page: Page, server: ServerProcess, console: Console) -> None:
    open_page(page, server)
    subs = metric(server, "ticker_subscriptions")
    page.get_by_test_id("symbol-input").fill("nflx")
    page.get_by_test_id("add-symbol").click()
    expect(page.get_by_test_id("row-NFLX")).to_be_visible()
    expect(page.locator("#message")).to_have_text("Added NFLX.")
    wait_price_change(page, "NFLX")
    # Several at once with the keyboard; a directory symbol outside the universe gets a generated market.
    page.get_by_test_id("symbol-input").fill("ko, pltr")
    page.get_by_test_id("symbol-input").press("Enter")
    wait_price_change(page, "PLTR")
    assert row_symbols(page)[-3:] == ["NFLX", "KO", "PLTR"]
    assert metric(server, "ticker_subscriptions") == subs + 3

    page.get_by_test_id("remove-NFLX").click()
    expect(page.get_by_test_id("row-NFLX")).to_have_count(0)
    # Keyboard removal moves the focus to the next row's remove button.
    page.get_by_test_id("remove-KO").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("row-KO")).to_have_count(0)
    expect(page.get_by_test_id("remove-PLTR")).to_be_focused()
    expect(page.locator("#message")).to_have_text("Removed KO.")
    page.wait_for_function("() => !document.querySelector('[data-testid=row-NFLX]')")
    assert row_symbols(page) == [*DEFAULT_ROWS, "PLTR"]
    eventually_sync(
        lambda: metric(server, "ticker_subscriptions") == subs + 1, 5.0, "the server to see both unsubscribes"
    )
    assert console.errors == []


def test_invalid_symbol_shows_its_message(page: Page, server: ServerProcess, console: Console) -> None:
    open_page(page, server)
    box = page.get_by_test_id("symbol-input")
    box.fill("BAD$SYM")
    page.get_by_test_id("add-symbol").click()
    msg = page.locator("#message")
    expect(msg).to_contain_text("“BAD$SYM” is not a valid symbol")
    expect(msg).to_have_attribute("aria-live", "polite")
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(box).to_have_value("BAD$SYM")  # kept for fixing
    assert row_symbols(page) == DEFAULT_ROWS
    box.fill("X" * 33)
    box.press("Enter")
    expect(msg).to_contain_text("is not a valid symbol")
    box.fill("")
    box.press("Enter")
    expect(msg).to_have_text("Type a symbol to add, for example AAPL.")
    assert console.errors == []


def test_server_refusal_is_shown_and_undone(page: Page, browser: Browser, console: Console) -> None:
    with ServerProcess([*SIM, "--max-symbols", "2"]) as srv:
        open_page(page, srv, "?symbols=AAPL,MSFT")
        expect(page.get_by_test_id("row-MSFT")).not_to_have_class(re.compile(r"\bwaiting\b"))
        page.get_by_test_id("symbol-input").fill("NFLX")
        page.get_by_test_id("add-symbol").click()
        msg = page.locator("#message")
        expect(msg).to_contain_text("Not added: NFLX.")
        expect(msg).to_contain_text("2")  # the server's own too_many_symbols text names the cap
        expect(page.get_by_test_id("row-NFLX")).to_have_count(0)
        assert row_symbols(page) == ["AAPL", "MSFT"]
        assert page.evaluate("localStorage.getItem('ticker.watchlist')") == '["AAPL","MSFT"]'
        assert console.errors == []


def test_restart_reconnects_resubscribes_and_resumes(
    page: Page, server: ServerProcess, console: Console
) -> None:
    open_page(page, server, "?symbols=AAPL,MSFT,PLTR")
    wait_price_change(page, "PLTR")
    page.evaluate(
        """() => {
          const el = document.querySelector('[data-testid=conn-status]');
          window.__states = [el.dataset.state];
          new MutationObserver(() => {
            const s = el.dataset.state;
            if (window.__states[window.__states.length - 1] !== s) window.__states.push(s);
          }).observe(el, { attributes: true, attributeFilter: ['data-state'] });
        }"""
    )
    server.stop()
    assert server.proc is not None and server.proc.returncode == 0
    status = page.get_by_test_id("conn-status")
    expect(status).to_have_attribute("data-state", "reconnecting")
    for sym in ("AAPL", "MSFT", "PLTR"):
        expect(page.get_by_test_id(f"row-{sym}")).to_have_class(re.compile(r"\bstale\b"))
        expect(page.get_by_test_id(f"row-{sym}").locator(".stale-badge")).to_be_visible()
    # A few failed attempts while the server is down: the third one is announced.
    expect(status).to_have_attribute("title", re.compile(r"attempt ([3-9]|\d\d+)$"))
    server.requested_port = server.port  # the same port again
    server.start()
    expect(status).to_have_attribute("data-state", "connected", timeout=ms(15))
    # The new server counts sequences from 1 again: its snapshot must still be shown at once.
    for sym in ("AAPL", "MSFT", "PLTR"):
        expect(page.get_by_test_id(f"row-{sym}")).not_to_have_class(re.compile(r"\bstale\b"), timeout=ms(3))
    wait_price_change(page, "PLTR")  # resubscribed: quotes flow again
    assert page.evaluate("window.__states") == ["connected", "reconnecting", "connected"]
    assert metric(server, "ticker_subscriptions") == 3
    assert console.exceptions == []


def test_watchlist_and_sort_survive_a_reload(page: Page, server: ServerProcess, console: Console) -> None:
    open_page(page, server)
    page.get_by_test_id("remove-TSLA").click()
    page.get_by_test_id("symbol-input").fill("KO")
    page.get_by_test_id("symbol-input").press("Enter")
    expect(page.get_by_test_id("row-KO")).to_be_visible()
    page.get_by_role("button", name="Symbol").click()
    page.get_by_role("button", name="Symbol").click()
    expected = sorted([s for s in DEFAULT_ROWS if s != "TSLA"] + ["KO"], reverse=True)
    assert row_symbols(page) == expected
    toggle = page.locator("#theme-toggle")
    dark_before = toggle.get_attribute("aria-pressed") == "true"
    toggle.click()  # the theme choice is kept too
    theme = "light" if dark_before else "dark"
    expect(page.locator("html")).to_have_attribute("data-theme", theme)
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", theme)
    expect(toggle).to_have_attribute("aria-pressed", "false" if dark_before else "true")
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
    assert row_symbols(page) == expected
    expect(page.locator("th[data-key=symbol]")).to_have_attribute("aria-sort", "descending")
    wait_price_change(page, "KO")
    assert console.errors == []


def test_symbols_in_the_url_override_the_saved_list(
    page: Page, server: ServerProcess, console: Console
) -> None:
    open_page(page, server)
    page.get_by_test_id("remove-AAPL").click()  # the saved list now differs from the default
    open_page(page, server, "?symbols=ko,pep,bad$")
    assert row_symbols(page) == ["KO", "PEP"]
    expect(page.locator("#message")).to_contain_text("“bad$”")
    wait_price_change(page, "PEP")
    page.get_by_test_id("symbol-input").fill("DIS")
    page.get_by_test_id("add-symbol").click()
    expect(page.get_by_test_id("row-DIS")).to_be_visible()
    assert page.url.endswith("?symbols=KO,PEP,DIS")  # the link keeps describing the list
    page.reload()
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
    assert row_symbols(page) == ["KO", "PEP", "DIS"]
    page.goto(server.url + "/")
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
    assert row_symbols(page) == ["KO", "PEP", "DIS"]  # edits were saved too
    assert console.errors == []


def test_sort_by_live_column(page: Page, server: ServerProcess) -> None:
    # Prices far apart, so a few ticks between the sort and the check cannot swap two rows.
    listed = ["MSFT", "KO", "COST", "AAPL"]
    open_page(page, server, "?symbols=" + ",".join(listed))
    for sym in listed:
        expect(page.get_by_test_id(f"price-{sym}")).to_have_attribute("data-value", re.compile(r"\d"))
    last = page.get_by_role("button", name="Last")
    last.focus()
    page.keyboard.press("Enter")  # header buttons work from the keyboard
    expect(page.locator("th[data-key=p]")).to_have_attribute("aria-sort", "ascending")
    prices = [price(page, s) for s in row_symbols(page)]
    assert prices == sorted(prices)
    page.keyboard.press("Enter")
    expect(page.locator("th[data-key=p]")).to_have_attribute("aria-sort", "descending")
    prices = [price(page, s) for s in row_symbols(page)]
    assert prices == sorted(prices, reverse=True)
    page.keyboard.press("Enter")  # third press: back to the watchlist's own order
    expect(page.locator("th[data-key=p]")).to_have_attribute("aria-sort", "none")
    assert row_symbols(page) == listed


def test_hundred_rows_render_at_most_once_per_frame(page: Page, browser: Browser, console: Console) -> None:
    symbols = [f"LOAD{i:03d}" for i in range(100)]
    with ServerProcess(["--seed", "3", "--sim-rate", "10", "--symbols", ",".join(symbols)]) as srv:
        open_page(page, srv, "?symbols=" + ",".join(symbols))
        page.wait_for_function("() => document.querySelectorAll('#rows tr.waiting').length === 0")
        stats: dict[str, Any] = page.evaluate(
            """() => new Promise(done => {
              const start = {...window.tickerStats};
              const before = new Map([...document.querySelectorAll('[data-testid^=price-]')]
                .map(td => [td.dataset.testid, td.dataset.value + '@' + td.closest('tr').querySelector('.col-time').textContent]));
              let rafs = 0;
              const t0 = performance.now();
              const loop = () => {
                rafs += 1;
                if (performance.now() - t0 < 2000) return requestAnimationFrame(loop);
                const changed = [...document.querySelectorAll('[data-testid^=price-]')].filter(td =>
                  before.get(td.dataset.testid) !== td.dataset.value + '@' + td.closest('tr').querySelector('.col-time').textContent).length;
                done({rafs, frames: window.tickerStats.frames - start.frames,
                      applied: window.tickerStats.applied - start.applied, changed});
              };
              requestAnimationFrame(loop);
            })"""
        )
        assert stats["frames"] <= stats["rafs"] + 1, stats  # never more than one render per animation frame
        assert stats["applied"] > stats["frames"], stats  # so quotes were batched
        assert stats["changed"] >= 95, stats  # (nearly) every row was updated in those 2 s
        assert console.errors == []


def test_page_symbol_rule_matches_the_server_and_backoff_is_bounded(
    page: Page, server: ServerProcess
) -> None:
    cases = ["aapl", " msft ", "BRK.B", "BTC-USD", "X:EURUSD", "BTC/USDT", "A_B", "9", "X" * 32, "X" * 33,
             "", " ", "AB$", "ÄPFEL", "A B", "a\u0131", "🙂", "NVDA\n", "ok;"]  # fmt: skip
    open_page(page, server)
    got = page.evaluate(
        "async (cases) => { const m = await import('/static/symbols.js');"
        " return cases.map(c => m.normalizeSymbol(c)); }",
        cases,
    )
    for case, js in zip(cases, got, strict=True):
        try:
            py: str | None = normalize_symbol(case)
        except InvalidSymbol:
            py = None
        assert js == py, case
    delays = page.evaluate(
        "async () => { const m = await import('/static/connection.js');"
        " return [0, 1, 2, 3, 10, 50].map(a => [m.backoffDelay(a, () => 0), m.backoffDelay(a, () => 0.999)]); }"
    )
    lows = [lo for lo, _ in delays]
    assert lows == sorted(lows) and lows[0] >= 250 and delays[-1][1] <= 15_000  # grows, jittered, capped
    assert all(hi > lo for lo, hi in delays)
