"""Latency of symbol search (``/api/search``, :mod:`ticker.search`) over a large directory, and its memory.

``python -m bench.search_latency [--symbols 10000] [--queries 10000] [--http N] [--seed 1]`` builds a
directory of ``symbols`` synthetic entries (tickers of 1-5 letters, some with a class suffix, some
crypto pairs; names made of realistic words: "Northern Pacific Holdings Corp.", with the default
universe under its real names), then times ``queries`` queries of mixed kinds one at a time:

- ``ticker``: a ticker or its first 1-3 letters, as typed (``aap``, ``MSFT``);
- ``name``: the start of a name word, 2 letters or more (``tes``, ``apple``);
- ``words``: two or three words of a name (``bank america``, ``Tesla Inc``);
- ``inside``: a piece from inside a word (``esl``);
- ``typo``: a ticker with one letter changed, dropped or two swapped, searched and then suggested
  (:func:`ticker.search.suggest`, "did you mean").

The pure functions first (p50/p99/max per kind and overall, the first query included, which builds the
index), then ``--http`` of the same queries through ``GET /api/search`` of a real node served in this
process (client and server share the event loop and CPU: the figure is a client's round trip on a
kept-alive connection). Memory: :mod:`tracemalloc` of building the directory and its search index
(the "did you mean" index, built on the first suggestion, separately).
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

from ticker.directory import Directory, SymbolInfo
from ticker.search import index_of, search, suggest
from ticker.symbols import DEFAULT_UNIVERSE

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


def synthetic_directory(n: int, rng: random.Random) -> list[SymbolInfo]:
    """``n`` entries: the real names above and the default universe, then synthetic ones."""
    out = {s: SymbolInfo(s, name, "NASDAQ") for s, name in REAL.items()}
    for s in DEFAULT_UNIVERSE:
        out.setdefault(s, SymbolInfo(s, f"{s.title()} Corporation", "NYSE"))
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


def memory(build: Callable[[], object]) -> tuple[object, int]:
    """What ``build()`` returns and the bytes it holds (tracemalloc)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    value = build()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return value, held


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=10_000, help="entries of the directory")
    ap.add_argument("--queries", type=int, default=10_000, help="queries timed")
    ap.add_argument(
        "--http", type=int, default=2_000, help="of those, how many go through /api/search (0: none)"
    )
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)

    def build() -> Directory:
        d = Directory()
        d.replace("bench", synthetic_directory(args.symbols, rng))
        return d

    directory, dir_bytes = memory(build)
    assert isinstance(directory, Directory)
    entries = list(directory.entries())
    _, index_bytes = memory(lambda: index_of(directory))
    _, typo_bytes = memory(lambda: suggest(directory, "QQQQQ"))
    fresh = Directory()  # the same again, timed without tracemalloc
    fresh.replace("bench", entries)
    t0 = time.perf_counter()
    search(fresh, "apple", 10)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    suggest(fresh, "QQQQQ")
    typo_s = time.perf_counter() - t0
    del fresh
    print(f"directory of {len(directory):,} symbols, memory held (tracemalloc):")
    print(f"  entries and Directory   {dir_bytes / 2**20:6.2f} MiB")
    print(
        f"  search index            {index_bytes / 2**20:6.2f} MiB; the first search builds it: {first_s * 1000:.0f} ms"
    )
    print(
        f"  did-you-mean index      {typo_bytes / 2**20:6.2f} MiB; the first long typo builds it: {typo_s * 1000:.0f} ms"
    )

    qs = queries(entries, args.queries, rng)
    times = time_pure(directory, qs)
    print(f"pure search, {len(qs):,} queries, limit 10 (typos: search, then suggest):")
    for kind in ("all", "ticker", "name", "words", "inside", "typo"):
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
