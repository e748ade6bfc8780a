"""The client side of the day statistics: the Python client's quotes carry them, ``ticker watch`` shows the range."""

from __future__ import annotations

import io

from rich.console import Console

from ticker.cli.watch_view import TableView
from ticker.client import Quote, TickerClient

ENTRY = {"s": "AAPL", "p": 228.61, "c": 0.11, "o": 227.9, "h": 229.14, "l": 227.52, "pc": 228.5, "vw": 228.37}


def test_the_client_s_quotes_carry_the_day_statistics() -> None:
    client = TickerClient("ws://h/ws", ["AAPL", "MSFT"])
    client._subs.apply([{**ENTRY, "t": 1, "q": 1}, {"s": "MSFT", "p": 415.0, "t": 1, "q": 1}])
    q = client.latest["AAPL"]
    assert isinstance(q, Quote)
    assert (q.open, q.high, q.low, q.prev_close, q.vwap) == (227.9, 229.14, 227.52, 228.5, 228.37)
    assert q.to_wire() == {**ENTRY, "cp": 0.0481, "t": 1, "q": 1}  # cp derived from c and pc
    old = client.latest["MSFT"]  # a server without day statistics
    assert (old.open, old.high, old.low, old.prev_close, old.vwap) == (None,) * 5


def test_the_watch_table_shows_the_day_range() -> None:
    view = TableView(["AAPL", "MSFT"], "ws://h/ws", 0)
    client = TickerClient("ws://h/ws", ["AAPL", "MSFT"])
    view.client = client
    client._subs.apply([{**ENTRY, "t": 1, "q": 1}, {"s": "MSFT", "p": 415.0, "t": 1, "q": 1}])
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(view.render())
    lines = console.export_text().splitlines()
    assert any("Day range" in line for line in lines)
    rows = {line.split("│")[1].strip(): line for line in lines if line.count("│") > 2}
    assert "227.52–229.14" in rows["AAPL"]
    assert "–" not in rows["MSFT"]  # unknown: an empty cell
