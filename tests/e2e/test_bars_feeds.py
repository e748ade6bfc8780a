"""Bars end to end with every provider kind: a real ``ticker serve --feed KIND --feed-url FAKE`` per provider
(streaming: polygon, alpaca, binance, coinbase, finnhub; polled: finnhub-rest, yahoo), all started at once for
the module, each against its fake in this module's event loop.

- ``GET /api/bars`` (``1m``, ``1d``) and ``subscribe_bars``'s ``bars`` hold the history the fake's documented
  history endpoint serves (:mod:`tests.support.fakes.barsdata`), as the server keeps it (a bounded series,
  day bars at the symbol's session midnight);
- live ``bar`` messages follow the fake's trades (streaming) or polls (polled): a bar's ``c`` is the price of
  the last quote of its interval;
- Polygon's ``AM`` aggregates and Alpaca's bars (``b``) and updated bars (``u``) replace the bar the server
  computed for that minute, and later trades of that minute leave it alone;
- a history endpoint that fails (500, 429) leaves the symbol's bars empty or partial, the server serving,
  one log line, and the load retried later by itself while the symbol is demanded
  (ticker/server/history.py).

Every REST body and WebSocket message is checked against docs/protocol.md's schemas.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import jsonschema
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect

from feeds.sessions import new_york
from tests.support.fakes.alpaca import FakeAlpaca
from tests.support.fakes.barsdata import DAY_MS, fake_bars
from tests.support.fakes.binance import FakeBinance
from tests.support.fakes.coinbase import FakeCoinbase
from tests.support.fakes.fake_finnhub_rest import FakeFinnhubRest
from tests.support.fakes.fake_yahoo import FakeYahoo
from tests.support.fakes.finnhub import FakeFinnhub
from tests.support.fakes.polygon import FakePolygon
from tests.support.schemas import http_schema, protocol_schemas
from tests.support.serverproc import ServerProcess
from tests.support.symbolkit import knows
from tests.support.timing import eventually, timeout
from tests.support.wsclient import recv, send
from ticker.bars import HISTORY, Bar, utc_day_start, zone_day_start

pytestmark = pytest.mark.asyncio(loop_scope="module")

MIN = 60_000
SERVER = jsonschema.Draft202012Validator(protocol_schemas()[1])
HTTP = jsonschema.Draft202012Validator(http_schema())
NY_DAY = zone_day_start(new_york())
ALPACA_ENV = {"ALPACA_KEY_ID": "KEY", "ALPACA_SECRET_KEY": "SECRET"}


@dataclass(frozen=True)
class Kind:
    """A provider kind: its fake, a symbol whose history the tests read, another one for a failing load, the
    env it needs, how its day bars are stamped by the server, and the path of its history endpoint."""

    name: str
    make: Callable[[], Any]
    symbol: str
    other: str
    env: dict[str, str] = field(default_factory=dict)
    days: Callable[[int], int] = NY_DAY  # the server's day of a US equity: midnight New York
    polled: bool = False
    history_path: Callable[[str], str] = lambda s: ""

    def __str__(self) -> str:
        return self.name


def _polygon() -> FakePolygon:
    fake = FakePolygon()
    # One page per interval, as Polygon answers limit=50000: the free plan's 5 requests a minute (no option
    # raises it) then cover the reference list and the four intervals of one symbol at once.
    fake.aggs_page = 50_000
    return fake


KINDS = [
    Kind("polygon", _polygon, "AAPL", "MSFT", {"POLYGON_API_KEY": "POLYKEY"}),
    Kind("alpaca", FakeAlpaca, "AAPL", "MSFT", ALPACA_ENV, history_path=lambda s: f"/v2/stocks/{s}/bars"),
    Kind("binance", lambda: FakeBinance(ping_interval=0.3), "BTCUSDT", "ETHUSDT", days=utc_day_start,
         history_path=lambda s: "/api/v3/klines"),
    Kind("coinbase", lambda: FakeCoinbase(heartbeat_interval=0.2), "BTC-USD", "ETH-USD", days=utc_day_start,
         history_path=lambda s: f"/products/{s}/candles"),
    Kind("finnhub", FakeFinnhub, "AAPL", "MSFT", {"FINNHUB_TOKEN": "test-token"},
         history_path=lambda s: "/api/v1/stock/candle"),
    Kind("finnhub-rest", FakeFinnhubRest, "AAPL", "MSFT", {"FINNHUB_TOKEN": "test-token"}, polled=True,
         history_path=lambda s: "/api/v1/stock/candle"),
    # Yahoo has no symbol list: its symbols stay pending, so their day bars are UTC days (docs/protocol.md).
    Kind("yahoo", FakeYahoo, "AAPL", "MSFT", days=utc_day_start, polled=True,
         history_path=lambda s: f"/v8/finance/chart/{s}"),
]  # fmt: skip
BY_NAME = {k.name: k for k in KINDS}


@dataclass
class Stack:
    """A fake and the server pointed at it; ``cutoff``: the minute the module started (bars before it are the
    fake's history, untouched by the tests' trades)."""

    kind: Kind
    fake: Any
    srv: ServerProcess
    cutoff: int
    http: httpx.AsyncClient

    def hits(self) -> list[Any]:
        return list(self.fake.hits if self.kind.name == "yahoo" else self.fake.desk.hits)

    def faults(self) -> Any:
        return self.fake.faults if self.kind.name == "yahoo" else self.fake.desk.faults


def _args(kind: Kind, fake: Any) -> list[str]:
    args = ["--host", "127.0.0.1", "--feed", kind.name, "--feed-url", fake.url,
            "--symbols", f"{kind.symbol},{kind.other}", "--feed-linger", "0.2",
            "--log-level", "info"]  # fmt: skip
    if kind.polled:
        args += ["--poll-rate", "20", "--poll-interval", "0.2"]
    else:
        args += ["--reconnect-base", "0.05", "--reconnect-cap", "0.2"]
    return args


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stacks() -> AsyncIterator[dict[str, Stack]]:
    """Every kind's fake and server, started together (their history loads overlap)."""
    cutoff = int(time.time() * 1000) // MIN * MIN
    fakes = {k.name: await k.make().start() for k in KINDS}
    servers = {k.name: ServerProcess(_args(k, fakes[k.name]), env=k.env) for k in KINDS}
    out: dict[str, Stack] = {}
    try:
        await asyncio.gather(*(asyncio.to_thread(s.start, 20.0) for s in servers.values()))
        for k in KINDS:
            client = httpx.AsyncClient(base_url=servers[k.name].url, timeout=timeout(10))
            out[k.name] = Stack(k, fakes[k.name], servers[k.name], cutoff, client)

        async def known(s: Stack) -> None:
            # A read before the directory has the symbol loses history (see test_history_survives_...): wait.
            if s.kind.name != "yahoo":
                await eventually(lambda: asyncio.to_thread(knows, s.srv.url, s.kind.symbol), 15, "directory")
            await s.http.get("/api/bars", params={"symbol": s.kind.symbol, "interval": "1m", "limit": 1})

        await asyncio.gather(*(known(s) for s in out.values()))
        yield out
    finally:
        for s in out.values():
            await s.http.aclose()
        await asyncio.gather(*(asyncio.to_thread(s.stop) for s in servers.values()))
        for f in fakes.values():
            await (f.stop() if hasattr(f, "stop") else f.close())


@pytest.fixture(params=[k.name for k in KINDS])
def stack(request: pytest.FixtureRequest, stacks: dict[str, Stack]) -> Stack:
    return stacks[request.param]


# -- helpers -------------------------------------------------------------------------------------
async def bars_of(s: Stack, symbol: str, interval: str, **params: Any) -> list[Bar]:
    r = await s.http.get("/api/bars", params={"symbol": symbol, "interval": interval, **params})
    assert r.status_code == 200, r.text
    body = r.json()
    HTTP.validate(body)
    assert body["s"] == symbol and body["interval"] == interval
    return [Bar(**b) for b in body["bars"]]


def served(kind: Kind, symbol: str, interval: str, lo: int, hi: int) -> list[Bar]:
    """The fake's bars of ``symbol`` starting in ``[lo, hi)`` as the server keeps them (days at the symbol's
    session midnight)."""
    if interval == "1m":
        return fake_bars(symbol, MIN, lo, hi)
    if interval == "5m":
        return fake_bars(symbol, 5 * MIN, lo, hi)
    ny = kind.days is NY_DAY or kind.name == "yahoo"  # the fakes stamp US equities' days in New York
    days = fake_bars(symbol, DAY_MS, lo - 2 * DAY_MS, hi + 2 * DAY_MS, ny_days=ny)
    return [b for b in (replace(d, t=kind.days(d.t)) for d in days) if lo <= b.t < hi]


def check_history(kind: Kind, symbol: str, interval: str, got: list[Bar], cutoff: int) -> list[Bar]:
    """The bars of ``got`` that ended by ``cutoff`` are exactly the fake's from the first one on; returns them."""
    if interval == "5m":
        cutoff -= cutoff % (5 * MIN)
    old = [b for b in got if b.t < cutoff]
    assert old, f"{kind}: no {interval} history before {cutoff}"
    assert old == served(kind, symbol, interval, old[0].t, cutoff)
    return old


async def valid(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    msg = await recv(ws, within)
    SERVER.validate(msg)
    assert msg["type"] != "error", msg
    return msg


def _closes_at(bar: dict[str, Any], price: float) -> bool:
    return bool(bar["c"] == price)


def now_ms() -> int:
    return int(time.time() * 1000)


async def subscribed_upstream(s: Stack, symbol: str) -> None:
    """Wait until the feed subscribed ``symbol`` upstream (streaming kinds)."""
    fake = s.fake
    if s.kind.name == "binance":
        await eventually(lambda: f"{symbol.lower()}@trade" in fake.subscribed(), what="binance streams")
    elif s.kind.name == "polygon":
        await eventually(lambda: f"AM.{symbol}" in fake.subscribed(), what="polygon channels")
    else:
        await eventually(lambda: symbol in fake.symbols(), what=f"{s.kind} subscription")


async def trade(s: Stack, symbol: str, price: float, size: float, ts: int) -> None:
    """One trade of ``symbol`` at ``ts`` (epoch ms) from a streaming fake, in its documented format."""
    fake, name = s.fake, s.kind.name
    if name == "polygon":
        await fake.events(
            {"ev": "T", "sym": symbol, "x": 4, "i": str(ts), "z": 3, "p": price, "s": size, "t": ts}
        )
    elif name == "alpaca":
        await fake.batch(FakeAlpaca.trade_item(symbol, price, int(size), ts))
    elif name == "binance":
        await fake.publish(f"{symbol.lower()}@trade", {
            "e": "trade", "E": ts, "s": symbol, "t": ts, "p": f"{price:.8f}", "q": f"{size:.8f}", "T": ts,
            "m": True, "M": True,
        })  # fmt: skip
    elif name == "coinbase":
        iso = datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        await fake.ticker(
            symbol, f"{price:.2f}", f"{price - 0.01:.2f}", f"{price + 0.01:.2f}", time=iso,
            last_size=f"{size:.8f}",
        )  # fmt: skip
    else:
        await fake.broadcast(
            {"type": "trade", "data": [{"p": price, "s": symbol, "t": ts, "v": size, "c": ["1"]}]},
            to=lambda c: symbol in c.subs,
        )


class BarWatch:
    """A WebSocket client's quotes and ``bar`` messages for one symbol and interval, each ``bar`` checked: its
    ``c`` is the price of the last quote of its interval received before it (quotes flush before bars), or,
    with no quote yet in its interval, it repeats a bar of the ``bars`` history (unless its start is in
    :attr:`provider`: a provider's own bar)."""

    def __init__(self, ws: ClientConnection, symbol: str, interval: str, length: int) -> None:
        self.ws, self.symbol, self.interval, self.length = ws, symbol, interval, length
        self.quotes: list[dict[str, Any]] = []
        self.history: dict[int, dict[str, Any]] = {}
        self.bars: list[dict[str, Any]] = []
        self.provider: set[int] = set()  # starts of the bars a provider's own bar is expected for

    async def subscribe(self, history: int) -> list[dict[str, Any]]:
        await send(self.ws, {"op": "subscribe", "symbols": [self.symbol]})
        await send(self.ws, {"op": "subscribe_bars", "symbol": self.symbol, "interval": self.interval,
                             "history": history})  # fmt: skip
        while True:
            msg = await self.next()
            if msg["type"] == "bars":
                assert (msg["s"], msg["interval"], msg["delayed"]) == (self.symbol, self.interval, False)
                self.history = {b["t"]: b for b in msg["data"]}
                return list(msg["data"])

    async def next(self, within: float = 5.0) -> dict[str, Any]:
        msg = await valid(self.ws, within)
        if msg["type"] in ("snapshot", "quotes"):
            self.quotes += [q for q in msg["data"] if q["s"] == self.symbol]
        elif msg["type"] == "bar" and msg["s"] == self.symbol and msg["interval"] == self.interval:
            bar = msg["bar"]
            inside = [q for q in self.quotes if bar["t"] <= q["t"] < bar["t"] + self.length]
            if bar["t"] in self.provider:
                pass
            elif inside:
                assert bar["c"] == inside[-1]["p"], (bar, inside[-1])
            else:
                assert self.history.get(bar["t"]) == bar, f"a bar without quotes that is no repeat: {bar}"
            assert bar["l"] <= min(bar["o"], bar["c"]) <= max(bar["o"], bar["c"]) <= bar["h"]
            self.bars.append(bar)
        return msg

    async def until(self, pred: Callable[[dict[str, Any]], bool], within: float = 5.0) -> dict[str, Any]:
        """Read until a ``bar`` message whose bar matches ``pred``; fail after ``within`` seconds (scaled)."""
        async with asyncio.timeout(timeout(within)):
            while True:
                msg = await self.next(within)
                if msg["type"] == "bar" and msg["s"] == self.symbol and pred(msg["bar"]):
                    return dict(msg["bar"])


# -- REST ----------------------------------------------------------------------------------------
async def test_rest_bars_are_the_providers_history(stack: Stack) -> None:
    """``1m`` (the full bound of the series) and ``1d`` (a year) as the fake's history endpoint serves them."""
    kind, sym = stack.kind, stack.kind.symbol

    async def minutes() -> list[Bar] | None:
        got = await bars_of(stack, sym, "1m", limit=5000)
        return got if len(got) == HISTORY["1m"] else None

    got = await eventually(minutes, 15, f"{kind}: a full 1m history")
    check_history(kind, sym, "1m", got, stack.cutoff)
    assert [b.t for b in got] == sorted({b.t for b in got})
    default = await bars_of(stack, sym, "1m")
    assert len(default) == 500 and default[0].t >= got[-500].t  # the newest 500 by default

    day = kind.days(stack.cutoff)
    days = await eventually(lambda: bars_of(stack, sym, "1d"), 10, f"{kind}: 1d history")
    old = check_history(kind, sym, "1d", days, day)
    assert len(old) > 200 and old[0].t < day - 360 * DAY_MS  # a year of trading days
    assert all(kind.days(b.t) == b.t for b in days)


# -- WebSocket: history, then live bars ------------------------------------------------------------
async def test_subscribe_bars_sends_the_history_then_live_bars_of_the_fakes_trades(stack: Stack) -> None:
    kind, sym = stack.kind, stack.kind.symbol
    await eventually(
        lambda: bars_of(stack, sym, "1m", limit=1), 15, f"{kind}: history"
    )  # loaded (finnhub's plan rate is slow)
    async with connect(stack.srv.ws_url) as ws:
        watch = BarWatch(ws, sym, "1m", MIN)
        data = await watch.subscribe(history=20)
        assert len(data) == 20
        check_history(kind, sym, "1m", [Bar(**b) for b in data], stack.cutoff)
        if kind.polled:  # each poll of the fake is a new price: the current bar closes at the latest
            first = len(watch.bars)
            async with asyncio.timeout(timeout(10)):
                while len({b["c"] for b in watch.bars[first:]}) < 3:
                    await watch.next()
            last = watch.bars[-1]
            assert last["t"] == watch.quotes[-1]["t"] // MIN * MIN
            return
        await subscribed_upstream(stack, sym)
        prices = [9001.25, 9003.5, 8999.75]  # far above the fake's history: h is the trades'
        sent: list[int] = []
        for i, p in enumerate(prices):
            ts = now_ms()
            sent.append(ts)
            await trade(stack, sym, p, 2.0 + i, ts)
            bar = await watch.until(partial(_closes_at, price=p))
            minute = ts // MIN * MIN
            assert bar["t"] == minute
            mine = [q for q, t in zip(prices[: i + 1], sent, strict=True) if t // MIN * MIN == minute]
            assert bar["h"] == max(mine) and bar["l"] <= min(mine)
        rest = await bars_of(stack, sym, "1m", limit=1)
        assert rest[-1].to_json() == bar  # REST agrees with the last bar message


# -- provider bars win ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["polygon", "alpaca"])
async def test_provider_minute_bars_replace_the_computed_one_and_trades_leave_them(
    name: str, stacks: dict[str, Stack]
) -> None:
    s = stacks[name]
    sym = s.kind.symbol
    async with connect(s.srv.ws_url) as ws:
        watch = BarWatch(ws, sym, "1m", MIN)
        data = await watch.subscribe(history=5)
        await subscribed_upstream(s, sym)
        ts = now_ms()
        minute = ts // MIN * MIN
        await trade(s, sym, 7777.5, 3, ts)
        computed = await watch.until(lambda b: b["c"] == 7777.5)
        assert computed["t"] == minute and computed["h"] >= 7777.5  # the minute may hold earlier trades

        provider = {"t": minute, "o": 7770.25, "h": 7790.0, "l": 7760.5, "c": 7781.75, "v": 4321.0}
        watch.provider.add(minute)
        if name == "polygon":
            await s.fake.events({"ev": "AM", "sym": sym, "v": 4321, "av": 9_470_157, "op": 7700.0, "vw": 7775.1,
                                 "o": 7770.25, "c": 7781.75, "h": 7790.0, "l": 7760.5, "a": 7701.0, "z": 685,
                                 "s": minute, "e": minute + MIN})  # fmt: skip
        else:
            stamp = datetime.fromtimestamp(minute / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            await s.fake.batch(FakeAlpaca.bar_item(sym, "b", 7770.25, 7790.0, 7760.5, 7781.75, 4321, stamp))
        assert await watch.until(lambda b: b["t"] == minute and b["c"] != 7777.5) == provider
        if name == "alpaca":  # an updated bar corrects it
            provider = {"t": minute, "o": 7770.25, "h": 7795.0, "l": 7755.0, "c": 7788.0, "v": 4400.0}
            await s.fake.batch(FakeAlpaca.bar_item(sym, "u", 7770.25, 7795.0, 7755.0, 7788.0, 4400, stamp))
            assert await watch.until(lambda b: b["t"] == minute and b["c"] == 7788.0) == provider

        # A later trade of that minute (the provider counted it) changes nothing; its quote shows it arrived.
        await trade(s, sym, 8888.0, 5, minute + MIN - 1)
        async with asyncio.timeout(timeout(5)):
            while not any(q["p"] == 8888.0 for q in watch.quotes):
                await watch.next()
        (got,) = await bars_of(s, sym, "1m", **{"from": minute, "to": minute + 1})
        assert got.to_json() == provider
        assert not [b for b in watch.bars if b["t"] == minute and b["c"] == 8888.0]

        # A late provider bar of an older minute (from the history) replaces it too.
        old = data[0]["t"]
        late = {"t": old, "o": 60.5, "h": 61.0, "l": 60.0, "c": 60.75, "v": 77.0}
        watch.provider.add(old)
        if name == "polygon":
            await s.fake.events({"ev": "AM", "sym": sym, "v": 77, "av": 1, "op": 60.0, "vw": 60.5, "o": 60.5,
                                 "c": 60.75, "h": 61.0, "l": 60.0, "a": 60.0, "z": 1, "s": old, "e": old + MIN})  # fmt: skip
        else:
            stamp = datetime.fromtimestamp(old / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            await s.fake.batch(FakeAlpaca.bar_item(sym, "u", 60.5, 61.0, 60.0, 60.75, 77, stamp))
        assert await watch.until(lambda b: b["t"] == old) == late
        (got,) = await bars_of(s, sym, "1m", **{"from": old, "to": old + 1})
        assert got.to_json() == late


# -- a failing history endpoint ---------------------------------------------------------------------
#: The faults each kind's history endpoint plays for the other symbol's first load: ``ok`` first leaves the
#: 1m bars loaded and fails the 5m request (partial); else the first request fails (empty). Polygon is left
#: out: past the first symbol its free-plan pacing (5 requests a minute) makes each load take a minute.
FAULTS = {
    "alpaca": ["ok", "429"],
    "finnhub": ["ok", "500"],
    "yahoo": ["ok", "500"],
    "binance": ["500"],
    "coinbase": ["429:1"],
    "finnhub-rest": ["500"],
}


async def _fails_then_retries(s: Stack, faults: list[str]) -> None:
    kind, sym = s.kind, s.kind.other
    path = kind.history_path(sym)
    if kind.name == "yahoo":
        s.fake.fault_paths = {path}
    elif kind.name == "alpaca":
        s.fake.desk.fault_paths = {path}
    # The symbol's own load first, out of the way of the plan's rate (Finnhub's is a request a second).
    await eventually(lambda: bars_of(s, kind.symbol, "1d", limit=1), 15, f"{kind}: {kind.symbol} loaded")
    before = len(s.hits())
    s.faults().extend(faults)
    partial = faults[0] == "ok"
    await bars_of(s, sym, "1m")  # the first read loads the history (waiting for it a few seconds)
    line = await eventually(
        lambda: [x for x in s.srv.lines if f"history of {sym} not loaded" in x], 10, f"{kind}: the log line"
    )
    assert len(line) == 1 and "retrying in" in line[0]
    minutes = await bars_of(s, sym, "1m", limit=5000)
    if partial:  # the 1m bars came before the failure
        assert len(minutes) == HISTORY["1m"]
        check_history(kind, sym, "1m", minutes, s.cutoff)
    else:
        assert minutes == []
    assert await bars_of(s, sym, "5m") == []

    def mine(h: Any) -> bool:  # a request of this symbol's history
        return bool(h.path == path and (sym in h.path or sym in h.query.values()))

    failed = [h for h in s.hits()[before:] if mine(h) and h.status not in (200, 0)]
    assert len(failed) == 1, failed
    assert not s.faults()
    assert "test-token" not in s.srv.output() and "SECRET" not in s.srv.output()
    assert await bars_of(s, kind.symbol, "1m", limit=1)  # the server keeps serving the other symbol

    async with connect(s.srv.ws_url) as ws:  # demanded from now on: the loader retries by itself
        await send(ws, {"op": "subscribe_bars", "symbol": sym, "interval": "5m", "history": 10})
        msg = await valid(ws)
        assert (msg["type"], msg["data"]) == ("bars", [])  # the retry is not due yet
        # Retried 5 to 10 s after the failure (RETRY_BASE plus a backoff) with no read asking for it: the
        # history that arrives comes to the subscription as one more ``bars``.
        # (A ``bars`` may come before it without the history: when the day bars a demanded symbol gets
        # arrive, holding the live bars of a polled feed if any.) Known to fail now and then until
        # HistoryLoader._retry_if_demanded stops trusting its timer to the microsecond: under uvloop the
        # timer may fire a fraction of a millisecond before the retry is due by time.monotonic(), ensure()
        # then declines, and nothing retries while the symbol is demanded.
        async with asyncio.timeout(timeout(25)):
            while (msg := await valid(ws, 25))["type"] != "bars" or len(msg["data"]) < 10:
                pass
        assert (msg["s"], msg["interval"]) == (sym, "5m")
        check_history(kind, sym, "5m", [Bar(**b) for b in msg["data"]], s.cutoff)

        async def full() -> list[Bar] | None:
            got = await bars_of(s, sym, "5m", limit=5000)
            return got if len(got) == HISTORY["5m"] else None

        check_history(kind, sym, "5m", await eventually(full, 10, f"{kind}: the 5m history"), s.cutoff)
    statuses = [h.status for h in s.hits()[before:] if mine(h)]
    assert statuses.count(200) >= 2 and len(statuses) < 40, statuses  # one failure, then a load: no loop


async def test_a_failing_history_endpoint_gives_empty_or_partial_bars_then_is_retried(
    stacks: dict[str, Stack],
) -> None:
    """All kinds at once (each waits out the loader's retry delay)."""
    await asyncio.gather(*(_fails_then_retries(stacks[n], f) for n, f in FAULTS.items()))


# -- a history load across the directory's arrival ----------------------------------------------------
async def test_history_survives_the_directory_arriving_during_the_load() -> None:
    """A chart opened before the provider's symbol list has loaded: the symbol starts on UTC days, the list
    makes it a US equity (New York days) while its history loads. Its 1m history must still be there."""
    fake = await FakeAlpaca().start()
    # The asset list 1 s late; of the history, 1m answers at once, 5m after 3 s (the list arrives between).
    fake.desk.faults.extend(["stall:1", "ok", "stall:3"])
    srv = ServerProcess(_args(BY_NAME["alpaca"], fake), env=ALPACA_ENV)
    try:
        await asyncio.to_thread(srv.start, 20.0)
        async with connect(srv.ws_url) as ws, httpx.AsyncClient(base_url=srv.url) as http:
            await send(ws, {"op": "subscribe_bars", "symbol": "AAPL", "interval": "1m", "history": 5})
            while (await valid(ws, 10))["type"] != "bars":
                pass
            assert await asyncio.to_thread(knows, srv.url, "AAPL")

            async def minutes() -> int:
                r = await http.get("/api/bars", params={"symbol": "AAPL", "interval": "1m"})
                return len(r.json()["bars"])

            await eventually(minutes, 5, "the 1m history")
    finally:
        await asyncio.to_thread(srv.stop)
        await fake.close()
