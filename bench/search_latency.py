"""Latency of symbol search (``/api/search``, :mod:`ticker.search`) over a large directory, and its memory.

``python -m bench.search_latency [--case 10k|30k] [--symbols N] [--pairs N] [--queries 10000] [--http N]
[--seed 1]`` builds a directory of ``symbols`` synthetic entries (tickers of 1-5 letters, some with a class
suffix, some crypto pairs; names made of realistic words: "Northern Pacific Holdings Corp.", with the
default universe under its real names; ``pairs`` of them long venue-qualified pairs such as
``BINANCE:XQZUSDT``), then times ``queries`` queries of mixed kinds one at a time:

- ``ticker``: a ticker or its first 1-3 letters, as typed (``aap``, ``MSFT``);
- ``name``: the start of a name word, 2 letters or more (``tes``, ``apple``);
- ``words``: two or three words of a name (``bank america``, ``Tesla Inc``);
- ``inside``: a piece from inside a word (``esl``);
- ``typo``: a ticker with one letter changed, dropped or two swapped, searched and then suggested
  (:func:`ticker.search.suggest`, "did you mean"); also shown by length (``typo<=4``, ``typo5+``).

The pure functions first (p50/p99/max per kind and overall, over indexes built beforehand by
:func:`ticker.search.index_of`, as the feed runner does), then ``--http`` of the same queries through
``GET /api/search`` of a real node served in this process (client and server share the event loop and
CPU: the figure is a client's round trip on a kept-alive connection). Memory: :mod:`tracemalloc` of building the directory, its search index and its
"did you mean" index (held, and the peak while each is built); build times; and what a long typo
costs the event loop when it comes before :func:`~ticker.search.index_of` has run.

Cases: ``10k`` (the default: 10,000 symbols, no venue pairs) and ``30k`` (30,000 symbols of which
3,000 are ``BINANCE:XXXUSDT`` pairs, a provider's full list); ``--symbols`` and ``--pairs`` override.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import string
import time
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

from ticker.directory import Directory, SymbolInfo
from ticker.search import LONG_SYMBOL, SHORT_SYMBOL, SearchIndex, TypoIndex, index_of, search, suggest
from ticker.symbols import DEFAULT_UNIVERSE

T = TypeVar("T")

REAL = {
    "AAPL": "Apple Inc.",
    "MSFT": "Microsoft Corporation",
    "NVDA": "NVIDIA Corporation",
    "AMZN": "Amazon.com, Inc.",
    "GOOGL": "Alphabet Inc. Class A",
    "META": "Meta Platforms, Inc.",
    "TSLA": "Tesla, Inc.",
    "BRK.B": "Berkshire Hathaway Inc. Class B",
    "JPM": "JPMorgan Chase & Co.",
    "BAC": "Bank of America Corporation",
    "KO": "The Coca-Cola Company",
    "MCD": "McDonald's Corporation",
    "SPY": "SPDR S&P 500 ETF Trust",
    "QQQ": "Invesco QQQ Trust",
}
FIRST = [
    "American",
    "Atlantic",
    "Northern",
    "Southern",
    "Western",
    "Eastern",
    "Pacific",
    "Global",
    "United",
    "National",
    "First",
    "General",
    "Royal",
    "Summit",
    "Pioneer",
    "Liberty",
    "Heritage",
    "Frontier",
    "Evergreen",
    "Cascade",
    "Keystone",
    "Harbor",
    "Granite",
    "Silver",
    "Golden",
    "Blue",
    "Red",
    "Green",
    "Iron",
    "Crown",
    "Eagle",
    "Falcon",
    "Phoenix",
    "Apex",
    "Vertex",
    "Nova",
    "Stellar",
    "Quantum",
    "Precision",
    "Allied",
    "Consolidated",
    "Continental",
    "Federal",
    "Standard",
    "Universal",
    "Advanced",
    "Applied",
    "Integrated",
    "Dynamic",
    "Sterling",
    "Madison",
    "Franklin",
    "Jefferson",
    "Lincoln",
    "Hamilton",
    "Kensington",
    "Brighton",
    "Lakeside",
    "Riverside",
]
MIDDLE = [
    "Bancorp",
    "Financial",
    "Energy",
    "Resources",
    "Pharmaceuticals",
    "Therapeutics",
    "Biosciences",
    "Semiconductor",
    "Technologies",
    "Software",
    "Systems",
    "Networks",
    "Communications",
    "Media",
    "Entertainment",
    "Foods",
    "Beverages",
    "Brands",
    "Retail",
    "Stores",
    "Motors",
    "Aerospace",
    "Defense",
    "Industries",
    "Materials",
    "Chemicals",
    "Steel",
    "Mining",
    "Gold",
    "Oil",
    "Gas",
    "Pipeline",
    "Utilities",
    "Power",
    "Water",
    "Realty",
    "Properties",
    "Insurance",
    "Capital",
    "Healthcare",
    "Medical",
    "Devices",
    "Logistics",
    "Airlines",
    "Railroad",
    "Shipping",
    "Homes",
    "Hotels",
    "Gaming",
    "Apparel",
    "Paper",
    "Packaging",
    "Solar",
]
LAST = [
    "Inc.",
    "Corp.",
    "Corporation",
    "Holdings",
    "Group",
    "Co.",
    "Ltd.",
    "plc",
    "Trust",
    "Partners",
    "L.P.",
    "Company",
    "Bancshares",
]
ETF = ["ETF", "Fund", "Index", "Shares", "Portfolio"]


CASES = {"10k": (10_000, 0), "30k": (30_000, 3_000)}  # case: (symbols, venue pairs among them)


def synthetic_directory(n: int, rng: random.Random, pairs: int = 0) -> list[SymbolInfo]:
    """``n`` entries: the real names above and the default universe, ``pairs`` venue-qualified pairs
    (``BINANCE:XQZUSDT``), then synthetic ones."""
    out = {s: SymbolInfo(s, name, "NASDAQ") for s, name in REAL.items()}
    for s in DEFAULT_UNIVERSE:
        out.setdefault(s, SymbolInfo(s, f"{s.title()} Corporation", "NYSE"))
    target = len(out) + pairs
    while len(out) < min(n, target):
        base = "".join(rng.choices(string.ascii_uppercase, k=3))
        s = f"BINANCE:{base}USDT"
        out.setdefault(s, SymbolInfo(s, f"{base}/USDT", "BINANCE", "crypto", "USDT"))
    while len(out) < n:
        r = rng.random()
        if r < 0.04:
            base = "".join(rng.choices(string.ascii_uppercase, k=rng.choice((3, 4, 5))))
            s = f"{base}-USD"
            info = SymbolInfo(
                s, f"{rng.choice(FIRST)} {rng.choice(MIDDLE)} / US Dollar", "COINBASE", "crypto"
            )
        else:
            length = rng.choices((1, 2, 3, 4, 5), weights=(1, 6, 30, 45, 18))[0]
            s = "".join(rng.choices(string.ascii_uppercase, k=length))
            if rng.random() < 0.02:
                s += rng.choice((".A", ".B"))
            words = [rng.choice(FIRST)]
            if rng.random() < 0.4:
                words.append(rng.choice(FIRST))
            words.append(rng.choice(MIDDLE))
            if rng.random() < 0.12:
                info = SymbolInfo(s, " ".join([*words, rng.choice(ETF)]), "NYSE ARCA", "etf")
            else:
                info = SymbolInfo(s, " ".join([*words, rng.choice(LAST)]), rng.choice(("NASDAQ", "NYSE")))
        out.setdefault(s, info)
    return list(out.values())


def _typo(s: str, rng: random.Random) -> str:
    i = rng.randrange(len(s))
    kind = rng.choice(("change", "drop", "swap")) if len(s) > 2 else "change"
    if kind == "change":
        return s[:i] + rng.choice(string.ascii_uppercase) + s[i + 1 :]
    if kind == "drop":
        return s[:i] + s[i + 1 :]
    i = min(i, len(s) - 2)
    return s[:i] + s[i + 1] + s[i] + s[i + 2 :]


def queries(entries: list[SymbolInfo], n: int, rng: random.Random) -> list[tuple[str, str]]:
    """``n`` (kind, text) queries drawn from ``entries``."""
    out = []
    for _ in range(n):
        e = rng.choice(entries)
        words = [w for w in e.name.replace(",", " ").split() if w[0].isalpha()]
        kind = rng.choice(("ticker", "name", "words", "inside", "typo"))
        if kind == "ticker":
            text = (
                e.symbol[: rng.randint(1, max(1, min(3, len(e.symbol))))] if rng.random() < 0.6 else e.symbol
            )
            text = text.lower() if rng.random() < 0.5 else text
        elif kind == "name":
            w = rng.choice(words)
            text = w[: rng.randint(2, max(2, len(w)))].lower()
        elif kind == "words":
            k = min(len(words), rng.choice((2, 3)))
            text = (
                " ".join(words[:k])
                if rng.random() < 0.5
                else " ".join(w.lower() for w in rng.sample(words, k))
            )
        elif kind == "inside":
            w = max(words, key=len)
            i = rng.randint(1, max(1, len(w) - 3))
            text = w[i : i + 3].lower()
        else:
            text = _typo(e.symbol, rng)
        out.append((kind, text))
    return out


def _ms(samples: list[float]) -> str:
    s = sorted(samples)
    p = lambda q: s[min(len(s) - 1, int(q * len(s)))] * 1000  # noqa: E731
    return f"p50 {p(0.50):6.3f}  p99 {p(0.99):6.3f}  max {s[-1] * 1000:7.3f} ms  (n={len(s):,})"


def time_pure(directory: Directory, qs: list[tuple[str, str]]) -> dict[str, list[float]]:
    """Seconds per query, per kind (and ``all``); a typo also asks for suggestions when nothing matched exactly."""
    times: dict[str, list[float]] = {"all": []}
    clock = time.perf_counter
    for kind, text in qs:
        t0 = clock()
        found = search(directory, text, 10)
        if kind == "typo" and (not found or found[0].symbol != text):
            suggest(directory, text)
        dt = clock() - t0
        times.setdefault(kind, []).append(dt)
        times["all"].append(dt)
        if kind == "typo":  # and by length: a long one asks the did-you-mean index
            times.setdefault("typo<=4" if len(text) <= SHORT_SYMBOL else "typo5+", []).append(dt)
    return times


class _ServerTimes(logging.Handler):
    """The request times (s) the access log of the server reports: the server's side of each round trip."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.args, tuple) and record.args and isinstance(record.args[-1], float):
            self.times.append(record.args[-1] / 1000.0)


async def time_http(entries: list[SymbolInfo], qs: list[tuple[str, str]]) -> tuple[list[float], list[float]]:
    """Round trips of ``GET /api/search`` for ``qs`` against a node served in this process, and the
    server's own time of each (Tornado's request time, from its access log)."""
    import httpx

    from tests.support.inprocess import serve_in_process

    access = logging.getLogger("tornado.access")
    server = _ServerTimes()
    async with serve_in_process(sim_rate=1.0) as srv:
        srv.node.directory.replace("bench", entries)
        times = []
        async with httpx.AsyncClient(base_url=srv.url) as client:
            await client.get("/api/search", params={"q": "a"})  # connect, build the index
            level = access.level
            access.setLevel(logging.INFO)
            access.addHandler(server)
            try:
                clock = time.perf_counter
                for _, text in qs:
                    t0 = clock()
                    r = await client.get("/api/search", params={"q": text, "limit": "10"})
                    times.append(clock() - t0)
                    r.raise_for_status()
            finally:
                access.removeHandler(server)
                access.setLevel(level)
    return times, server.times


def memory(build: Callable[[], T]) -> tuple[T, int, int]:
    """What ``build()`` returns, the bytes it holds and the most it held meanwhile (tracemalloc)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    value = build()
    now, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return value, now - before, peak - before


def timed(run: Callable[[], T]) -> tuple[T, float]:
    """What ``run()`` returns and the seconds it took."""
    t0 = time.perf_counter()
    value = run()
    return value, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=sorted(CASES), default="10k", help="a preset of --symbols and --pairs")
    ap.add_argument("--symbols", type=int, help="entries of the directory (default: the case's)")
    ap.add_argument("--pairs", type=int, help="of those, BINANCE:XXXUSDT pairs (default: the case's)")
    ap.add_argument("--queries", type=int, default=10_000, help="queries timed")
    ap.add_argument(
        "--http", type=int, default=2_000, help="of those, how many go through /api/search (0: none)"
    )
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    n, pairs = CASES[args.case]
    n = n if args.symbols is None else args.symbols
    pairs = pairs if args.pairs is None else args.pairs

    def build() -> Directory:
        d = Directory()
        d.replace("bench", synthetic_directory(n, rng, pairs))
        return d

    directory, dir_bytes, _ = memory(build)
    entries = list(directory.entries())
    index, index_bytes, index_peak = memory(lambda: SearchIndex(entries))
    _, typo_bytes, typo_peak = memory(lambda: TypoIndex(index.tickers))
    fresh = Directory()  # the same again, timed without tracemalloc
    fresh.replace("bench", entries)
    _, first_s = timed(lambda: search(fresh, "apple", 10))  # the search part, built by a first search
    _, loop_s = timed(lambda: suggest(fresh, "QQQQQ"))  # a long typo before index_of: what the loop pays
    fresh.replace("bench", entries)  # a new version: index_of builds both, as the feed runner does
    _, build_s = timed(lambda: index_of(fresh))
    _, typo_s = timed(lambda: TypoIndex(index.tickers))
    long = sum(len(e.symbol) > LONG_SYMBOL for e in entries)
    print(f"directory of {len(directory):,} symbols ({pairs:,} venue pairs), memory (tracemalloc):")
    print(f"  entries and Directory   {dir_bytes / 2**20:6.2f} MiB held")
    print(
        f"  search index            {index_bytes / 2**20:6.2f} MiB held, {index_peak / 2**20:6.2f} MiB peak;"
        f" built in {first_s * 1000:.0f} ms"
    )
    print(
        f"  did-you-mean index      {typo_bytes / 2**20:6.2f} MiB held, {typo_peak / 2**20:6.2f} MiB peak;"
        f" built in {typo_s * 1000:.0f} ms ({long:,} tickers over {LONG_SYMBOL} characters left out)"
    )
    print(
        f"  index_of (both, in the loaders' thread) {build_s * 1000:.0f} ms; a long typo before it:"
        f" {loop_s * 1000:.2f} ms on the event loop (one-edit suggestions only, nothing built)"
    )

    qs = queries(entries, args.queries, rng)
    index_of(directory)
    times = time_pure(directory, qs)
    print(f"pure search, {len(qs):,} queries, limit 10 (typos: search, then suggest):")
    for kind in ("all", "ticker", "name", "words", "inside", "typo", "typo<=4", "typo5+"):
        if kind in times:
            print(f"  {kind:7s} {_ms(times[kind])}")
    if args.http > 0:
        http, server = asyncio.run(time_http(entries, qs[: args.http]))
        print("GET /api/search, limit 10, a node served in this process:")
        print(f"  server  {_ms(server)}  (Tornado's request time)")
        print(f"  client  {_ms(http)}  (httpx round trip, same process)")
    p99 = sorted(times["all"])[int(0.99 * len(times["all"]))] * 1000
    print(f"verdict: pure p99 {p99:.3f} ms {'<' if p99 < 5 else '>='} 5 ms")


if __name__ == "__main__":
    main()
