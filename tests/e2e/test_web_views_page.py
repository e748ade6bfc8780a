"""The page takes what it can use (issue 16), in headless Chromium against a real ``ticker serve``: rows out
of view and every row of a hidden tab at ``max_hz`` 1, checked on the server's side (``/metrics``
``ticker_throttled_subscriptions`` and the ``rates`` of its ``subscribed``), and changed-fields deltas
(``/ws?delta=1``) merged into the full quotes the rows and the detail panel show."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocket, WebSocketRoute, expect

from tests.support.pagekit import ms
from tests.support.serverproc import ServerProcess, scrape
from tests.support.timing import eventually_sync

ROWS = [f"ROW{i:02d}" for i in range(24)]
SIM = ["--seed", "5", "--sim-rate", "8", "--log-level", "warning", "--symbols", ",".join(ROWS)]
GAUGE = "ticker_throttled_subscriptions"
# The row's cells and the quote field each shows (the wide layout shows them all).
CELLS = {"col-last": "p", "col-chg": "c", "col-pct": "cp", "col-open": "o", "col-high": "h", "col-low": "l",
         "col-bid": "b", "col-ask": "a", "col-vol": "v", "col-time": "t"}  # fmt: skip
FIELDS = ["p", "b", "a", "v", "c", "cp", "o", "h", "l", "pc", "vw", "t"]

# The rows on screen and off it, by their boxes: a row touching an edge (within a pixel) is "edge" (an
# IntersectionObserver counts a row that only touches the viewport as on screen: the test avoids them).
GEOMETRY_JS = """() => {
  const h = window.innerHeight, out = {on: [], off: [], edge: []};
  for (const tr of document.querySelectorAll('#rows tr')) {
    const r = tr.getBoundingClientRect();
    const where = Math.abs(r.bottom) < 1 || Math.abs(r.top - h) < 1 ? 'edge' : r.bottom < 0 || r.top > h ? 'off' : 'on';
    out[where].push(tr.dataset.symbol);
  }
  return out;
}"""
# A scroll position at or above ``y0`` (whole pixels) where no row touches the viewport's top or bottom edge.
CLEAR_Y_JS = """(y0) => {
  const h = window.innerHeight;
  const rows = [...document.querySelectorAll('#rows tr')].map(tr => {
    const r = tr.getBoundingClientRect();
    return [r.top + window.scrollY, r.bottom + window.scrollY];
  });
  for (let y = Math.min(y0, document.documentElement.scrollHeight - h); y >= 0; y -= 3) {
    if (rows.every(([t, b]) => Math.abs(b - y) >= 2 && Math.abs(t - (y + h)) >= 2)) return Math.floor(y);
  }
  return null;
}"""

# The page's visibility as the browser would report it for a background tab. Playwright keeps every page
# visible (a new page, a minimized window, a background target or a frozen lifecycle leave
# document.visibilityState "visible"), so the test sets what the page reads and fires the event it listens to.
SET_HIDDEN_JS = """(hidden) => {
  if (hidden) {
    Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
    Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
  } else {
    delete document.visibilityState;
    delete document.hidden;
  }
  document.dispatchEvent(new Event('visibilitychange'));
  return document.visibilityState;
}"""


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    """A server of its own per test: the throttled subscriptions in /metrics are the test's page's."""
    with ServerProcess(SIM) as srv:
        yield srv


class Frames:
    """The page's sockets: their URLs, and the JSON it sends and receives."""

    def __init__(self, page: Page) -> None:
        self.urls: list[str] = []
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        page.on("websocket", self._socket)

    def _socket(self, ws: WebSocket) -> None:
        self.urls.append(ws.url)
        ws.on("framesent", lambda payload: self.sent.append(json.loads(payload)))
        ws.on("framereceived", lambda payload: self.received.append(json.loads(payload)))

    def subscribes(self, since: int = 0) -> list[dict[str, Any]]:
        return [m for m in self.sent[since:] if m.get("op") == "subscribe"]

    def rates(self) -> set[str] | None:
        """The symbols the server's last ``subscribed`` says it throttles (None before one with ``rates``)."""
        last = [m for m in self.received if m.get("type") == "subscribed" and "rates" in m]
        return set(last[-1]["rates"]) if last else None


def view(page: Page, y: int) -> dict[str, list[str]]:
    """Scroll the window once, to ``y`` or a little above where no row touches an edge; the rows on and off screen."""
    clear = page.evaluate(CLEAR_Y_JS, y)
    assert clear is not None, "no scroll position without a row on an edge"
    page.evaluate("(y) => window.scrollTo(0, y)", clear)
    page.wait_for_function("(y) => Math.abs(window.scrollY - y) < 1", arg=clear)
    rows: dict[str, list[str]] = page.evaluate(GEOMETRY_JS)
    assert not rows["edge"], rows
    return rows


def server_throttles(page: Page, srv: ServerProcess, frames: Frames, symbols: list[str], what: str) -> None:
    """Wait until the server throttles exactly ``symbols`` of the page's: its gauge and its ``rates`` say so."""

    def done() -> bool:
        page.evaluate("true")  # lets Playwright deliver the socket's frames
        return scrape(srv.url).get(GAUGE) == len(symbols) and frames.rates() == set(symbols)

    eventually_sync(done, 10.0, what)


def open_page(page: Page, srv: ServerProcess, symbols: list[str]) -> None:
    page.goto(f"{srv.url}/?symbols={','.join(symbols)}")
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
    page.wait_for_function("() => document.querySelectorAll('#rows tr.waiting').length === 0", timeout=ms(10))


def test_rows_out_of_view_and_a_hidden_tab_are_throttled_on_the_server(
    page: Page, server: ServerProcess
) -> None:
    page.set_viewport_size({"width": 1200, "height": 560})
    frames = Frames(page)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    listed, extra = ROWS[:-1], ROWS[-1]
    open_page(page, server, listed)
    assert frames.urls == [f"ws://127.0.0.1:{server.port}/ws?delta=1"]

    top = view(page, 0)
    assert top["on"] and len(top["off"]) >= 8, top  # a short window: most rows are below it
    server_throttles(page, server, frames, top["off"], "the rows below the window throttled")
    for msg in frames.subscribes():  # only max_hz 1 or the full rate, never a row asked for twice at once
        assert msg.get("max_hz", 1) == 1 and len(msg["symbols"]) == len(set(msg["symbols"])), msg

    # Scrolled half way: rows above and below are out of view, the middle ones on screen at the full rate.
    sent = len(frames.sent)
    half = page.evaluate("() => document.querySelector('#rows tr:nth-child(12)').getBoundingClientRect().top")
    middle = view(page, int(half) - 150)
    assert set(middle["on"]) != set(top["on"]) and middle["off"][0] == ROWS[0], middle
    server_throttles(page, server, frames, middle["off"], "the rows out of view throttled after a scroll")
    # One scroll, gathered into one subscribe per rate: the rows that left at 1 Hz, those that came in at full rate.
    moved = frames.subscribes(sent)
    assert sorted(m.get("max_hz", 0) for m in moved) == [0, 1], moved
    assert {s for m in moved if "max_hz" in m for s in m["symbols"]} == set(middle["off"]) - set(top["off"])
    assert {s for m in moved if "max_hz" not in m for s in m["symbols"]} == set(middle["on"]) - set(top["on"])

    # A hidden tab: every row at 1 Hz; shown again, the rows on screen at the full rate again.
    assert page.evaluate(SET_HIDDEN_JS, True) == "hidden"
    server_throttles(page, server, frames, listed, "every row throttled while the tab is hidden")
    assert page.evaluate(SET_HIDDEN_JS, False) == "visible"
    server_throttles(page, server, frames, middle["off"], "the rows on screen at the full rate again")

    # An added row goes below the last one, out of view: it starts at 1 Hz. A removed one is no longer held.
    bottom_before = view(page, 0)
    assert bottom_before["off"][-1] == listed[-1]
    # the scroll back to the top is answered first (the rows it brought into view at the full rate again)
    server_throttles(page, server, frames, bottom_before["off"], "the rows below the window throttled again")
    sent = len(frames.sent)
    page.get_by_test_id("symbol-input").fill(extra)
    page.get_by_test_id("symbol-input").press("Enter")
    expect(page.get_by_test_id(f"row-{extra}")).to_have_count(1)
    assert frames.subscribes(sent)[0] == {"op": "subscribe", "symbols": [extra], "max_hz": 1}
    server_throttles(page, server, frames, [*bottom_before["off"], extra], "the added row throttled")
    gone = bottom_before["off"][0]
    page.evaluate(
        "(sym) => document.querySelector(`[data-testid=remove-${sym}]`).click()", gone
    )  # no scrolling
    expect(page.get_by_test_id(f"row-{gone}")).to_have_count(0)
    left = [s for s in bottom_before["off"] if s != gone]
    server_throttles(page, server, frames, [*left, extra], "the removed row's subscription gone")
    assert view(page, 0)["off"] == [*left, extra]
    assert errors == []


def merge(state: dict[str, dict[str, Any]], msg: dict[str, Any]) -> None:
    """docs/protocol.md's merge rule: a snapshot entry replaces, a quotes entry merges (null deletes; q <= last ignored)."""
    for entry in msg["data"]:
        sym = entry["s"]
        held = state.get(sym)
        if msg["type"] == "snapshot" or held is None:
            state[sym] = {k: v for k, v in entry.items() if v is not None}
        elif entry["q"] > held["q"]:
            for key, value in entry.items():
                if value is None:
                    held.pop(key, None)
                else:
                    held[key] = value


def test_deltas_are_merged_into_full_rows_and_panel(page: Page, server: ServerProcess) -> None:
    """The page's socket sends deltas; the test holds the server's frames back for a moment and checks that
    the rows and the panel show the merge of what the page received, and that these are full quotes (a
    second, full-quote socket got the same fields at the same ``q``)."""
    page.set_viewport_size({"width": 1440, "height": 900})  # the wide layout: every column shown
    symbols = ROWS[:6]
    held: list[str] = []  # the server's frames not forwarded yet
    forwarded: list[dict[str, Any]] = []
    gate = {"open": True}
    routes: list[WebSocketRoute] = []

    def through(ws: WebSocketRoute) -> None:
        srv = ws.connect_to_server()
        if "delta=1" not in ws.url:
            return  # the full-quote socket below: passed through untouched
        routes.append(ws)

        def from_server(message: str | bytes) -> None:
            text = message if isinstance(message, str) else message.decode()
            if gate["open"]:
                forwarded.append(json.loads(text))
                ws.send(text)
            else:
                held.append(text)

        srv.on_message(from_server)

    page.route_web_socket(re.compile(r"/ws(\?|$)"), through)
    # A full-quote subscriber beside the page, in the browser: every entry it gets, by symbol and q.
    page.add_init_script(
        "window.__full = {}; if (location.search.includes('symbols=')) {"
        " const s = new WebSocket(location.origin.replace('http', 'ws') + '/ws?symbols='"
        " + new URLSearchParams(location.search).get('symbols'));"
        " s.onmessage = (ev) => { const m = JSON.parse(ev.data);"
        " if (m.type === 'quotes' || m.type === 'snapshot') for (const e of m.data) window.__full[e.s + '@' + e.q] = e; }; }"
    )
    open_page(page, server, symbols)
    assert [r.url for r in routes] == [f"ws://127.0.0.1:{server.port}/ws?delta=1"]
    page.get_by_test_id(f"row-{symbols[0]}").click()  # the panel shows every field
    expect(page.get_by_test_id("detail-panel")).to_be_visible()
    # Rows update (quotes flow) and the server sends deltas: some entries leave fields out.
    page.wait_for_function("() => window.tickerStats.applied > 40", timeout=ms(10))
    quotes = [e for m in forwarded if m.get("type") == "quotes" for e in m["data"]]
    assert quotes and any("pc" not in e for e in quotes)  # the previous close does not change: left out

    gate["open"] = False
    state: dict[str, dict[str, Any]] = {}
    for msg in forwarded:
        if msg.get("type") in ("snapshot", "quotes"):
            merge(state, msg)

    def shown() -> dict[str, Any]:
        return page.evaluate(
            """([symbols, cells, fields]) => ({
              rows: Object.fromEntries(symbols.map(s => {
                const tr = document.querySelector(`[data-testid=row-${s}]`);
                return [s, Object.fromEntries(Object.keys(cells).map(c => [c, tr.querySelector('.' + c).textContent]))];
              })),
              panel: Object.fromEntries(fields.map(k =>
                [k, document.querySelector(`[data-testid=detail-field-${k}]`).textContent])),
              value: Object.fromEntries(symbols.map(s =>
                [s, Number(document.querySelector(`[data-testid=price-${s}]`).dataset.value)])),
            })""",
            [symbols, CELLS, FIELDS],
        )

    def expected() -> dict[str, Any]:
        return page.evaluate(
            """async ([state, symbols, cells, fields, open]) => {
              const { fieldText } = await import('/static/table.js');
              return {
                rows: Object.fromEntries(symbols.map(s =>
                  [s, Object.fromEntries(Object.entries(cells).map(([c, k]) => [c, fieldText(state[s], k)]))])),
                panel: Object.fromEntries(fields.map(k => [k, fieldText(state[open], k)])),
                value: Object.fromEntries(symbols.map(s => [s, state[s].p])),
              };
            }""",
            [state, symbols, CELLS, FIELDS, symbols[0]],
        )

    try:
        want = expected()
        eventually_sync(lambda: shown() == want or None, 5.0, "the page showing the merged quotes")
        # Merged deltas are full quotes: the full-quote socket got the same at the same q (it may lag a little).
        for sym in symbols:
            key = f"{sym}@{state[sym]['q']}"

            def full_entry(key: str = key) -> dict[str, Any] | None:
                entry: dict[str, Any] | None = page.evaluate("(k) => window.__full[k] || null", key)
                return entry

            full = eventually_sync(full_entry, 5.0, f"{key} on the full socket")
            assert state[sym] == full, sym
            assert set(FIELDS) <= set(full), full  # the simulated feed sends every field
    finally:
        while held:  # in order (sending lets more arrive, held too), then the gate opens
            routes[-1].send(held.pop(0))
        gate["open"] = True
    page.wait_for_function(
        "(n) => window.tickerStats.applied > n", arg=page.evaluate("window.tickerStats.applied")
    )


def test_the_pages_merge_rule(page: Page, server: ServerProcess) -> None:
    """deltas.js by itself: snapshot replaces, quotes merge (null deletes, q <= last ignored), a new object each
    time; what is shown never goes back under one epoch, across connections too; another epoch starts again."""
    page.goto(f"{server.url}/?symbols=ROW00")
    got = page.evaluate(
        """async () => {
          const { PageQuotes } = await import('/static/deltas.js');
          const book = new PageQuotes(), out = [];
          book.snapshot('e1');
          const a = book.apply({s: 'X', q: 5, p: 10, b: 9, a: 11, t: 1}, true);
          const b = book.apply({s: 'X', q: 6, p: 10.5, b: null}, false);
          out.push(a, b, a === b, book.apply({s: 'X', q: 6, p: 99}, false), book.apply({s: 'X', q: 4, p: 99}, false));
          out.push(book.apply({s: 'X', q: 3, p: 7}, true));  // a snapshot replaces whatever its q, shown if newer
          out.push(book.get('X'));  // ... the base of the next delta
          out.push(book.apply({s: 'X', q: 3, a: 8}, false));  // ... and the q to beat
          book.retier('X');  // a tier move: the next entry counts whatever its q, and replaces what is held
          out.push(book.get('X'));  // ... which stays shown until then
          out.push(book.apply({s: 'X', q: 2, p: 7.5, a: 8}, false));
          out.push(book.apply({s: 'Y', q: 9, p: 1, v: null}, false));  // no quote yet: the entry is the quote
          book.newConnection();
          out.push(book.get('X') ?? 'none');
          book.snapshot('e1');  // another node of the same source, behind for Y
          out.push(book.apply({s: 'Y', q: 8, p: 0.5}, true), book.apply({s: 'Y', q: 9, p: 1}, false));
          out.push(book.apply({s: 'Y', q: 10, p: 2}, false));
          book.newConnection();
          book.snapshot('e2');  // another source: starts again
          out.push(book.apply({s: 'Y', q: 1, p: 3}, true), book.epoch);
          return out;
        }"""
    )
    assert got == [
        {"s": "X", "q": 5, "p": 10, "b": 9, "a": 11, "t": 1},
        {"s": "X", "q": 6, "p": 10.5, "a": 11, "t": 1},
        False,
        None,
        None,
        None,
        {"s": "X", "q": 3, "p": 7},
        None,
        {"s": "X", "q": 3, "p": 7},
        {"s": "X", "q": 2, "p": 7.5, "a": 8},
        {"s": "Y", "q": 9, "p": 1},
        "none",
        None,
        None,
        {"s": "Y", "q": 10, "p": 2},
        {"s": "Y", "q": 1, "p": 3},
        "e2",
    ]
