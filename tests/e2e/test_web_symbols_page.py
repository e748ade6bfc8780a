"""The page and the symbol directory, in real Chromium against real ``ticker serve`` processes: search by
name in the add box, a typo refused with "did you mean", company names under the tickers, and the
connection pill naming what is wrong when a watched symbol is not live (a replay that ended, a closed
market)."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from feeds.sessions import closed_reason, last_close, new_york
from tests.support.pagekit import ms
from tests.support.serverproc import ServerProcess
from tests.support.timing import timeout

SIM = ["--seed", "7", "--sim-rate", "8", "--log-level", "warning"]
PRICE = re.compile(r"\d")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """The simulated market with its directory; unknown symbols refused (the default)."""
    with ServerProcess(SIM) as srv:
        yield srv


@pytest.fixture
def context_options() -> dict[str, Any]:
    """The page shows market hours in New York time."""
    return {"timezone_id": "America/New_York"}


class Watch:
    """The page's console errors, uncaught exceptions and WebSocket frames sent."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.sent: list[str] = []
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("websocket", lambda ws: ws.on("framesent", lambda payload: self.sent.append(str(payload))))

    def subscribed(self) -> list[str]:
        """Every symbol the page asked the server for."""
        out: list[str] = []
        for frame in self.sent:
            msg = json.loads(frame)
            if msg.get("op") == "subscribe":
                out += msg["symbols"]
        return out


def open_page(page: Page, srv: ServerProcess, query: str = "") -> None:
    page.goto(f"{srv.url}/{query}")
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")


def row_symbols(page: Page) -> list[str]:
    return page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.symbol)")


def test_search_by_name_adds_the_right_ticker(page: Page, server: ServerProcess) -> None:
    watch = Watch(page)
    open_page(page, server, "?symbols=AAPL")
    box = page.get_by_test_id("symbol-input")
    listbox = page.get_by_test_id("symbol-suggestions")
    expect(box).to_have_attribute("role", "combobox")
    expect(box).to_have_attribute("aria-controls", "symbol-suggestions")
    expect(listbox).to_have_attribute("role", "listbox")
    # A name and Enter: the best match is added, not one row per word.
    box.press_sequentially("Tesla Inc")
    box.press("Enter")
    expect(page.get_by_test_id("row-TSLA")).to_be_visible()
    expect(page.get_by_test_id("symbol-message")).to_have_text("Added TSLA.")
    expect(page.get_by_test_id("row-TSLA").get_by_test_id("row-name")).to_have_text("Tesla, Inc.")
    expect(box).to_have_value("")
    # Suggestions as you type: ticker, name and exchange; a click adds that ticker.
    box.press_sequentially("netfl")
    option = page.get_by_test_id("symbol-suggestion").first
    expect(listbox).to_have_attribute("data-query", "netfl")
    expect(listbox).to_be_visible()
    expect(box).to_have_attribute("aria-expanded", "true")
    expect(option).to_have_attribute("data-symbol", "NFLX")
    expect(option).to_contain_text("NFLX")
    expect(option).to_contain_text("Netflix, Inc.")
    expect(option).to_contain_text("NASDAQ")
    option.click()
    expect(page.get_by_test_id("row-NFLX")).to_be_visible()
    expect(listbox).to_be_hidden()
    # The keyboard: Down and Up move the highlighted option (wrapping), Enter adds it, Escape closes the
    # list and a second Escape clears the box.
    box.press_sequentially("micro")
    options = page.get_by_test_id("symbol-suggestion")
    expect(listbox).to_have_attribute("data-query", "micro")
    expect(options.nth(2)).to_be_visible()
    box.press("ArrowDown")
    box.press("ArrowDown")
    second = options.nth(1)
    expect(second).to_have_attribute("aria-selected", "true")
    expect(box).to_have_attribute("aria-activedescendant", second.get_attribute("id") or "?")
    box.press("ArrowUp")
    box.press("ArrowUp")  # wraps to the last option
    last = options.last
    expect(last).to_have_attribute("aria-selected", "true")
    picked = last.get_attribute("data-symbol")
    assert picked and picked not in row_symbols(page)
    box.press("Escape")
    expect(listbox).to_be_hidden()
    expect(box).to_have_attribute("aria-expanded", "false")
    expect(box).not_to_have_attribute("aria-activedescendant", re.compile("."))
    expect(box).to_have_value("micro")
    box.press("Escape")
    expect(box).to_have_value("")
    box.press_sequentially("micro")
    expect(listbox).to_have_attribute("data-query", "micro")
    expect(options.last).to_have_attribute("data-symbol", picked)
    box.press("ArrowUp")
    box.press("Enter")
    expect(page.get_by_test_id(f"row-{picked}")).to_be_visible()
    assert row_symbols(page) == ["AAPL", "TSLA", "NFLX", picked]
    # A name typed in one word adds its company too; a ticker typed whole still adds that ticker.
    box.fill("coca cola")
    box.press("Enter")
    expect(page.get_by_test_id("row-KO")).to_be_visible()
    box.fill("v")
    box.press("Enter")
    expect(page.get_by_test_id("row-V")).to_be_visible()
    assert page.evaluate("localStorage.getItem('ticker.watchlist')") == json.dumps(
        ["AAPL", "TSLA", "NFLX", picked, "KO", "V"], separators=(",", ":")
    )
    assert sorted(set(watch.subscribed())) == sorted({"AAPL", "TSLA", "NFLX", picked, "KO", "V"})
    assert watch.errors == []


def record_rows(page: Page) -> None:
    """Keep every symbol that ever gets a row in ``window.__rowsSeen`` from now on."""
    page.evaluate(
        """() => {
          window.__rowsSeen = [];
          new MutationObserver((records) => {
            for (const r of records) for (const n of r.addedNodes) if (n.dataset) window.__rowsSeen.push(n.dataset.symbol);
          }).observe(document.getElementById('rows'), { childList: true });
        }"""
    )


def test_a_typo_adds_nothing_and_says_what_was_meant(page: Page, server: ServerProcess) -> None:
    watch = Watch(page)
    open_page(page, server, "?symbols=MSFT")
    record_rows(page)
    box = page.get_by_test_id("symbol-input")
    box.fill("APPL")
    box.press("Enter")
    message = page.get_by_test_id("symbol-message")
    expect(message).to_contain_text("No symbol APPL — did you mean AAPL (Apple Inc.)")
    expect(box).to_have_value("APPL")  # kept for fixing
    expect(box).to_have_attribute("aria-invalid", "true")
    assert row_symbols(page) == ["MSFT"]
    assert page.evaluate("localStorage.getItem('ticker.watchlist')") == '["MSFT"]'
    assert page.url.endswith("?symbols=MSFT")
    assert "APPL" in watch.subscribed()  # the server said no: not even for a moment was there a row
    assert page.evaluate("window.__rowsSeen") == []
    # The Down arrow offers the closest matches; the first is Apple.
    box.press("ArrowDown")
    first = page.get_by_test_id("symbol-suggestion").first
    expect(first).to_have_attribute("data-symbol", "AAPL")
    expect(first).to_have_attribute("aria-selected", "true")
    box.press("Enter")
    expect(page.get_by_test_id("row-AAPL")).to_be_visible()
    expect(message).to_have_text("Added AAPL.")
    expect(box).to_have_attribute("aria-invalid", "false")
    # Typos in a list: the known symbols go in, the unknown one is named.
    box.fill("ko, nflxx")
    box.press("Enter")
    expect(page.get_by_test_id("row-KO")).to_be_visible()
    expect(message).to_contain_text("No symbol NFLXX — did you mean NFLX (Netflix, Inc.)")
    expect(box).to_have_value("NFLXX")
    assert page.evaluate("window.__rowsSeen") == ["AAPL", "KO"]
    # A typo in a shared link: the row goes, and the message says why.
    open_page(page, server, "?symbols=MSFT,APPL")
    expect(page.get_by_test_id("row-APPL")).to_have_count(0)
    expect(message).to_contain_text("No symbol APPL — did you mean AAPL (Apple Inc.)")
    assert row_symbols(page) == ["MSFT"]
    assert page.url.endswith("?symbols=MSFT")
    assert watch.errors == []


def test_rows_show_company_names_fetched_once(page: Page, server: ServerProcess) -> None:
    asked: list[str] = []
    page.on("request", lambda req: asked.append(req.url) if "/api/symbols/" in req.url else None)
    named = {
        "AAPL": "Apple Inc.",
        "SPY": "SPDR S&P 500 ETF Trust",
        "KO": "The Coca-Cola Company",
        "BRK.B": "Berkshire Hathaway Inc. Class B",
        "DIS": "The Walt Disney Company",
        "NVDA": "NVIDIA Corporation",
    }
    open_page(page, server, "?symbols=" + ",".join(named))
    for sym, name in named.items():
        expect(page.get_by_test_id(f"row-{sym}").get_by_test_id("row-name")).to_have_text(name)
    assert sorted(u.rsplit("/", 1)[1] for u in asked) == sorted(named)
    # Kept in localStorage: a reload shows them without asking again.
    asked.clear()
    page.reload()
    expect(page.get_by_test_id("conn-status")).to_have_text("Live")
    for sym, name in named.items():
        expect(page.get_by_test_id(f"row-{sym}").get_by_test_id("row-name")).to_have_text(name)
    expect(page.get_by_test_id("price-KO")).to_have_attribute("data-value", PRICE)
    assert asked == []


def write_recording(path: Path, symbols: list[str], start_ms: int, seconds: float) -> int:
    """A recording of ``symbols`` quoting every 0.25 s for ``seconds`` from ``start_ms``; its last ``t``."""
    lines = [
        json.dumps({"format": "ticker-quotes", "version": 1, "created": "2026-01-01T00:00:00Z", "feeds": []})
    ]
    t = start_ms
    for i in range(int(seconds * 4)):
        t = start_ms + i * 250
        for n, sym in enumerate(symbols):
            p = 100.0 + 50 * n + (i % 7) * 0.01
            quote = {
                "r": t,
                "s": sym,
                "p": p,
                "b": p - 0.01,
                "a": p + 0.01,
                "v": 1000 + i,
                "t": t,
                "pc": 99.5,
            }
            lines.append(json.dumps(quote))
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return t


def shown_time(t_ms: int) -> tuple[str, str]:
    """How the page (en-US, New York time) shows quote time ``t_ms``: (time of day, the same with its date)."""
    at = datetime.fromtimestamp(t_ms / 1000, new_york())
    return f"{at:%H:%M:%S}", f"{at:%b} {at.day} {at:%H:%M:%S}"


def test_the_pill_leaves_live_when_the_replay_ends(page: Page, tmp_path: Path) -> None:
    # Quotes recorded two days ago, kept with their own times; the recording lasts a few seconds.
    recording = tmp_path / "short.jsonl.gz"
    start = int((time.time() - 2 * 86400) * 1000)
    last_t = write_recording(recording, ["AAPL", "MSFT"], start, timeout(8.0))
    args = [
        "--feed",
        "replay",
        "--replay-file",
        str(recording),
        "--replay-keep-time",
        "--log-level",
        "warning",
    ]
    with ServerProcess(args) as srv:
        open_page(page, srv, "?symbols=AAPL,MSFT")
        pill = page.get_by_test_id("conn-status")
        expect(pill).to_have_text("Live")
        expect(pill).to_have_attribute("data-feed", "live")
        expect(page.get_by_test_id("price-AAPL")).to_have_attribute("data-value", PRICE)
        expect(page.get_by_test_id("row-AAPL").get_by_test_id("row-state")).to_be_hidden()
        # The recording ends: the feed is down, the pill says so, each row wears the badge.
        expect(pill).to_have_text("Feed down", timeout=ms(8.0 + 10.0))
        expect(pill).to_have_attribute("data-state", "connected")
        expect(pill).to_have_attribute("data-feed", "down")
        expect(pill).to_have_attribute("title", re.compile(r"AAPL: feed replay is down: the recording ended"))
        for sym in ("AAPL", "MSFT"):
            badge = page.get_by_test_id(f"row-{sym}").get_by_test_id("row-state")
            expect(badge).to_be_visible()
            expect(badge).to_have_text("Down")
            expect(badge).to_have_attribute("title", "feed replay is down: the recording ended")
        # Quotes from an earlier day show their date.
        _, dated = shown_time(last_t)
        expect(page.get_by_test_id("row-AAPL").locator(".col-time")).to_have_text(dated)
        # A replay's directory names each symbol after itself: no name repeats the ticker.
        expect(page.get_by_test_id("row-AAPL").get_by_test_id("row-name")).to_be_hidden()


SATURDAY_NOON = datetime(2026, 3, 14, 12, 0, tzinfo=new_york())  # New York time
WEDNESDAY_11 = datetime(2026, 3, 11, 11, 0, tzinfo=new_york())


def market_at(at: datetime) -> dict[str, str]:
    """The environment that starts a server's simulated market at ``at`` (docs/feeds.md, a testing aid)."""
    return {"TICKER_SIM_NOW": at.isoformat()}


def test_the_pill_says_market_closed_outside_us_hours(page: Page) -> None:
    now = SATURDAY_NOON
    with ServerProcess([*SIM, "--sim-session", "us-equities"], env=market_at(now)) as srv:
        open_page(page, srv, "?symbols=AAPL,KO")
        pill = page.get_by_test_id("conn-status")
        badge = page.get_by_test_id("row-KO").get_by_test_id("row-state")
        expect(page.get_by_test_id("price-KO")).to_have_attribute("data-value", PRICE)
        expect(pill).to_have_text("Market closed")
        expect(pill).to_have_attribute("data-feed", "closed")
        expect(badge).to_have_text("Closed")
        assert closed_reason(now) == "US market closed; opens Mon 09:30 ET"
        expect(badge).to_have_attribute("title", closed_reason(now))
        # The market's quote is the one of the last close, Friday's: shown with its date.
        friday_close = datetime(2026, 3, 13, 16, 0, tzinfo=new_york())
        assert last_close(now) == friday_close
        _, dated = shown_time(int(friday_close.timestamp() * 1000))
        expect(page.get_by_test_id("row-KO").locator(".col-time")).to_have_text(dated)


def test_the_pill_says_live_within_us_hours(page: Page) -> None:
    with ServerProcess([*SIM, "--sim-session", "us-equities"], env=market_at(WEDNESDAY_11)) as srv:
        open_page(page, srv, "?symbols=AAPL,KO")
        pill = page.get_by_test_id("conn-status")
        expect(page.get_by_test_id("price-KO")).to_have_attribute("data-value", PRICE)
        expect(pill).to_have_text("Live")
        expect(pill).to_have_attribute("data-feed", "live")
        expect(page.get_by_test_id("row-KO").get_by_test_id("row-state")).to_be_hidden()


def test_names_refused_for_the_request_rate_are_asked_again(page: Page) -> None:
    # A burst of 2 /api requests, then one every 2 s: most name requests get 429 first.
    with ServerProcess([*SIM, "--rest-rate", "0.5", "--rest-burst", "2"]) as srv:
        refused: list[int] = []
        page.on("response", lambda res: refused.append(1) if res.status == 429 else None)
        named = {
            "AAPL": "Apple Inc.",
            "KO": "The Coca-Cola Company",
            "NVDA": "NVIDIA Corporation",
            "DIS": "The Walt Disney Company",
            "SPY": "SPDR S&P 500 ETF Trust",
        }
        open_page(page, srv, "?symbols=" + ",".join(named))
        for sym, name in named.items():
            expect(page.get_by_test_id(f"row-{sym}").get_by_test_id("row-name")).to_have_text(
                name, timeout=ms(30)
            )
        assert refused  # the server did refuse some, and the page waited them out
