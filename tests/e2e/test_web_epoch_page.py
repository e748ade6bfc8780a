"""The page in a real Chromium moved to another Redis edge node (a load balancer cuts its socket): under the same
epoch it never shows an older quote, nor the same one again (docs/protocol.md, "The epoch rule")."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.support.pagekit import ms
from tests.support.redisproc import RedisProcess, node, publisher
from tests.support.tcpswitch import TcpSwitch

SYMS = ["AAPL", "MSFT", "IBM"]
#: Records every quote a price cell shows, as [symbol, q], in order.
RECORD_SHOWN = """() => {
  window.__shown = [];
  new MutationObserver((records) => {
    for (const r of records) {
      const row = r.target.closest('tr');
      window.__shown.push([row.dataset.symbol, Number(r.target.dataset.q)]);
    }
  }).observe(document.getElementById('rows'), { attributes: true, subtree: true, attributeFilter: ['data-q'] });
}"""
#: True once every symbol showed a quote after the first ``n`` recorded.
SHOWN_EACH_AFTER = "([n, syms]) => syms.every((s) => window.__shown.slice(n).some(([sym]) => sym === s))"


@pytest.fixture
def redis_srv() -> Iterator[RedisProcess]:
    with RedisProcess() as r:
        yield r


def test_the_page_moved_to_another_edge_never_shows_an_older_quote(
    page: Page, redis_srv: RedisProcess
) -> None:
    market = (
        "--symbols",
        "AAPL,MSFT",
        "--sim-rate",
        "1",
    )  # slow: edge b's snapshot mostly repeats what it shows
    with publisher(redis_srv, *market), node(redis_srv) as a, node(redis_srv) as b, TcpSwitch(a.port) as lb:
        page.goto(f"{lb.url}/?symbols={','.join(SYMS)}")
        status = page.get_by_test_id("conn-status")
        expect(status).to_have_attribute("data-state", "connected")
        page.evaluate(RECORD_SHOWN)
        page.wait_for_function(SHOWN_EACH_AFTER, arg=[0, SYMS], timeout=ms(10))
        epoch = page.evaluate("window.tickerStats.epoch")
        assert epoch == str(redis_srv.command("GET", "ticker:source"))
        before = page.evaluate("window.__shown.length")
        lb.switch(b.port)  # the page's socket is cut; it reconnects through the switch, to edge b
        page.wait_for_function("(n) => window.__shown.length > n", arg=before, timeout=ms(10))
        moved = page.evaluate("window.__shown.length")
        page.wait_for_function(SHOWN_EACH_AFTER, arg=[moved, SYMS], timeout=ms(15))
        expect(status).to_have_attribute("data-state", "connected")
        assert lb.accepted >= 2 and page.evaluate("window.tickerStats.epoch") == epoch
        shown: list[list[object]] = page.evaluate("window.__shown")
        last: dict[str, int] = {}
        for sym, q in shown:
            assert isinstance(sym, str) and isinstance(q, int)
            assert q > last.get(sym, 0), f"{sym} showed q {q} after {last[sym]}: {shown}"
            last[sym] = q
