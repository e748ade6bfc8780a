"""Search over the symbol directory (:mod:`ticker.search`): its ranking, normalization and limits, the index
following the directory, and "did you mean"."""

from __future__ import annotations

import random
import string

import pytest

from ticker.directory import Directory, SymbolInfo
from ticker.search import (
    LONG_SYMBOL,
    MAX_WORDS,
    SYMBOL_CHARS,
    _distance,
    index_of,
    query_words,
    search,
    suggest,
)
from ticker.symbols import valid_symbol

ENTRIES = [
    ("A", "Agilent Technologies, Inc."),
    ("AA", "Alcoa Corporation"),
    ("AAP", "Advance Auto Parts, Inc."),
    ("AAPL", "Apple Inc."),
    ("AMD", "Advanced Micro Devices, Inc."),
    ("AMX", "América Movil, S.A.B. de C.V."),
    ("AMZN", "Amazon.com, Inc."),
    ("APLE", "Apple Hospitality REIT, Inc."),
    ("APP", "AppLovin Corporation"),
    ("APPF", "AppFolio, Inc."),
    ("APPN", "Appian Corporation"),
    ("BAC", "Bank of America Corporation"),
    ("BK", "The Bank of New York Mellon Corporation"),
    ("BRK.B", "Berkshire Hathaway Inc. Class B"),
    ("GOOG", "Alphabet Inc. Class C"),
    ("GOOGL", "Alphabet Inc. Class A"),
    ("KO", "The Coca-Cola Company"),
    ("MCD", "McDonald's Corporation"),
    ("MSFT", "Microsoft Corporation"),
    ("NVDA", "NVIDIA Corporation"),
    ("SPY", "SPDR S&P 500 ETF Trust"),
    ("TSLA", "Tesla, Inc."),
    ("BTC-USD", "Bitcoin / US Dollar"),
    ("EUR/USD", "Euro / US Dollar"),
]


def directory(entries: list[tuple[str, str]] = ENTRIES, indexed: bool = True) -> Directory:
    """A directory of ``entries``; ``indexed``: with its indexes built, as the feed runner does after a load."""
    d = Directory()
    d.replace("test", [SymbolInfo(s, name, "NASDAQ") for s, name in entries])
    if indexed:
        index_of(d)
    return d


def tickers(d: Directory, text: str, limit: int = 10) -> list[str]:
    return [e.symbol for e in search(d, text, limit)]


@pytest.fixture(scope="module")
def d() -> Directory:
    return directory()


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("aapl", "AAPL"),
        ("AAPL", "AAPL"),
        (" tsla ", "TSLA"),
        ("brk.b", "BRK.B"),
        ("btc-usd", "BTC-USD"),
        ("EUR/USD", "EUR/USD"),
        ("a", "A"),  # the exact ticker before the longer ones that start with it
        ("aa", "AA"),
    ],
)
def test_an_exact_ticker_comes_first(d: Directory, text: str, first: str) -> None:
    assert tickers(d, text)[0] == first


def test_ticker_prefixes_come_shorter_first_then_names(d: Directory) -> None:
    # APP (3 letters) before APLE, APPF, APPN (4, in order); then AAPL, whose name starts with "ap"
    assert tickers(d, "ap") == ["APP", "APLE", "APPF", "APPN", "AAPL"]
    assert tickers(d, "A", 4) == ["A", "AA", "AAP", "AMD"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tesla", ["TSLA"]),
        ("Tesla Inc", ["TSLA"]),  # punctuation of the name does not count
        ("tesla, inc.", ["TSLA"]),
        ("apple", ["AAPL", "APLE"]),  # ties by ticker
        ("bank america", ["BAC"]),  # every word starts a word of the name ("of" skipped)
        ("Bank of America", ["BAC"]),
        ("bank", ["BAC", "BK"]),
        ("mcdonalds", ["MCD"]),  # apostrophes dropped
        ("McDonald's", ["MCD"]),
        ("coca cola", ["KO"]),
        ("amazon.com", ["AMZN"]),
        ("america movil", ["AMX"]),  # accents do not count either way
        ("AMÉRICA", ["AMX", "BAC"]),
        ("s&p 500", ["SPY"]),
        ("alphabet class c", ["GOOG", "GOOGL"]),  # GOOGL: "c" inside "inc" and "class"
        ("MICRO", ["AMD", "MSFT"]),
        ("soft", ["MSFT"]),  # inside a word: the last rule
        ("hospitality rei", ["APLE"]),
    ],
)
def test_names_match_by_their_words(d: Directory, text: str, expected: list[str]) -> None:
    assert tickers(d, text) == expected


def test_word_starts_rank_before_words_found_inside_names() -> None:
    d = directory([("AAA", "Urban Homes Inc."), ("ZZZ", "Bank Holdings Corp."), ("MMM", "Banco Uno")])
    assert tickers(d, "ban") == ["MMM", "ZZZ", "AAA"]
    assert tickers(d, "ho") == ["AAA", "ZZZ"]  # both start a word: by ticker


def test_a_ticker_prefix_ranks_before_a_name() -> None:
    d = directory([("APPLE", "Some Other Co."), ("AAPL", "Apple Inc."), ("ZAPP", "Zapp Apple Growers")])
    assert tickers(d, "apple") == ["APPLE", "AAPL", "ZAPP"]


def test_every_word_must_match(d: Directory) -> None:
    assert tickers(d, "apple tesla") == []
    assert tickers(d, "bank zzz") == []
    assert tickers(d, "nothing like this") == []


def test_limit(d: Directory) -> None:
    assert len(tickers(d, "a", 3)) == 3
    every = ["AA", "APP", "APPN", "BAC", "BK", "MCD", "MSFT", "NVDA"]
    assert tickers(d, "corporation", 50) == every
    assert tickers(d, "a", 0) == []
    assert tickers(d, "corporation", 2) == ["AA", "APP"]


@pytest.mark.parametrize("text", ["", "   ", "!!!", "&", "'"])
def test_empty_text_finds_nothing(d: Directory, text: str) -> None:
    assert tickers(d, text) == []


def test_oversized_text_is_capped(d: Directory) -> None:
    assert tickers(d, "apple " * 1000) == ["AAPL", "APLE"]  # repeats count once
    assert tickers(d, "x" * 10_000) == []
    assert query_words("x" * 1000) == ["x" * 64]
    many = " ".join(string.ascii_lowercase)
    assert query_words(many) == list(string.ascii_lowercase[:MAX_WORDS])
    assert tickers(d, "tesla " + "x" * 100) == []  # the 64 characters end inside the x's


def test_allow_leaves_out_what_the_caller_may_not_see(d: Directory) -> None:
    found = search(d, "a", 5, allow=lambda s: not s.startswith("A"))
    assert [e.symbol for e in found] == ["BAC", "GOOG", "GOOGL", "BK", "BRK.B"]  # a word "a...", then an "a"
    assert search(d, "aapl", 5, allow=lambda s: s != "AAPL") == []


def test_results_are_directory_entries(d: Directory) -> None:
    (entry,) = search(d, "tesla", 10)
    assert entry.to_json() == {
        "s": "TSLA",
        "name": "Tesla, Inc.",
        "exchange": "NASDAQ",
        "type": "stock",
        "currency": "USD",
    }


def test_the_index_follows_the_directory() -> None:
    d = directory([("AAPL", "Apple Inc.")])
    assert tickers(d, "tesla") == []
    d.replace("test", [SymbolInfo("AAPL", "Apple Inc."), SymbolInfo("TSLA", "Tesla, Inc.")])
    assert tickers(d, "tesla") == ["TSLA"]
    d.replace("test", [SymbolInfo("NVDA", "NVIDIA Corporation")])
    assert tickers(d, "tesla") == []
    assert tickers(d, "apple") == []
    assert tickers(d, "nvidia") == ["NVDA"]
    d.replace("other", [SymbolInfo("KO", "The Coca-Cola Company")])  # a second source
    assert tickers(d, "co") == ["KO", "NVDA"]


def test_an_empty_directory_finds_nothing() -> None:
    d = Directory()
    d.expect("sim")  # still loading
    assert search(d, "aapl") == []
    assert suggest(d, "APPL") == []


# -- did you mean ---------------------------------------------------------------------------


def suggested(d: Directory, symbol: str, limit: int = 3, **kw: object) -> list[str]:
    return [e.symbol for e in suggest(d, symbol, limit, **kw)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("typo", "first"),
    [
        ("APPL", "AAPL"),  # one letter changed (a well-known ticker before APPF, APPN)
        ("appl", "AAPL"),
        ("MSTF", "MSFT"),  # two letters swapped
        ("TESLA", "TSLA"),  # one letter too many
        ("TSL", "TSLA"),  # one too few
        ("GOOGLE", "GOOGL"),
        ("NVIDIA", "NVDA"),  # two edits: a long symbol
        ("BRKB", "BRK.B"),
        ("BTCUSD", "BTC-USD"),
    ],
)
def test_a_typo_gets_the_closest_tickers(d: Directory, typo: str, first: str) -> None:
    assert suggested(d, typo)[0] == first


def test_suggestions_rank_by_distance_then_well_known_then_first_letter(d: Directory) -> None:
    assert suggested(d, "APPL", 5) == ["AAPL", "APPF", "APPN", "APP"]  # all one edit away
    assert suggested(d, "APPL", 5, prefer=("APPN",)) == ["APPN", "AAPL", "APPF", "APP"]
    assert suggested(d, "GOOGLE", 5) == ["GOOGL", "GOOG"]  # one edit, then two
    assert suggested(d, "APPL", 1) == ["AAPL"]


@pytest.mark.parametrize("symbol", ["ZZZZ", "XQWV", "QWERTYZ", "NOTHINGLIKEIT", "X", "MSOFT1234"])
def test_far_off_symbols_get_no_suggestion(d: Directory, symbol: str) -> None:
    assert suggested(d, symbol) == []


@pytest.mark.parametrize("symbol", ["AAPL", "aapl", "bad$", "", "a b"])
def test_known_or_malformed_symbols_get_no_suggestion(d: Directory, symbol: str) -> None:
    assert suggested(d, symbol) == []


def test_suggest_never_builds_an_index_and_one_edit_needs_none() -> None:
    d = directory(indexed=False)
    assert suggested(d, "APPL") == ["AAPL", "APPF", "APPN"]  # looked up in the directory
    assert suggested(d, "GOOGLE") == ["GOOGL"]  # one edit away: looked up too
    assert suggested(d, "NVIDIA") == []  # two edits away needs the index, not built yet
    assert suggested(d, "NVIDIA") == []  # and still not: asking did not build it
    index_of(d)
    assert suggested(d, "NVIDIA") == ["NVDA"]
    assert suggested(d, "GOOGLE") == ["GOOGL", "GOOG"]


def test_two_edits_are_looked_for_only_when_one_edit_finds_too_few() -> None:
    d = directory([("ABCDE", "One"), ("ABCDF", "Two"), ("ABCXY", "Three")])
    assert suggested(d, "ABCDX", 2) == ["ABCDE", "ABCDF"]
    assert suggested(d, "ABCDX", 3) == ["ABCDE", "ABCDF", "ABCXY"]
    assert suggested(d, "ABCDX", 3, allow=lambda s: s != "ABCDE") == ["ABCDF", "ABCXY"]


def test_a_stale_index_suggests_only_what_the_directory_still_has() -> None:
    d = directory([("GOOGL", "Alphabet Inc. Class A"), ("GOOG", "Alphabet Inc. Class C")])
    d.replace("test", [SymbolInfo("GOOGL", "Alphabet Inc. Class A"), SymbolInfo("NVDA", "NVIDIA")])
    assert suggested(d, "GOOGLE") == ["GOOGL"]  # the index of the last version, GOOG gone since
    assert suggested(d, "NVIDIA") == []  # new since the index was built
    index_of(d)  # what the feed runner does after each change, in a thread
    assert suggested(d, "NVIDIA") == ["NVDA"]


class RacedDirectory(Directory):
    """A directory that changes, and gets its indexes built, while a first build reads its entries:
    what happens when the loop changes it during a build in a thread."""

    def __init__(self) -> None:
        super().__init__()
        self.race = False

    def entries(self) -> list[SymbolInfo]:
        snapshot = list(super().entries())
        if self.race:
            self.race = False
            self.replace("test", [SymbolInfo("NVDA", "NVIDIA Corporation")])
            index_of(self)  # the newer version's build, finished first
        return snapshot


def test_an_index_built_for_an_older_version_does_not_replace_a_newer_one() -> None:
    d = RacedDirectory()
    d.replace("test", [SymbolInfo("GOOGL", "Alphabet Inc. Class A")])
    d.race = True
    old = index_of(d)  # built from GOOGL's version, after NVDA's
    assert old.tickers == ["GOOGL"]
    assert tickers(d, "nvidia") == ["NVDA"] and tickers(d, "alphabet") == []
    assert suggested(d, "NVIDIA") == ["NVDA"] and suggested(d, "GOOGLE") == []


def test_long_tickers_up_to_the_bound_are_suggested() -> None:
    pairs = ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT", "BINANCE:BTCUSDC", "BINANCE:1000SHIBUSDT"]
    too_long = "X" * (LONG_SYMBOL + 1)
    d = directory([(s, s) for s in [*pairs, too_long, "OANDA:EUR_USD"]])
    assert suggested(d, "BINANCE:BTCUSTD") == ["BINANCE:BTCUSDT", "BINANCE:BTCUSDC"]
    assert suggested(d, "BINANSE:ETHUSDT") == ["BINANCE:ETHUSDT"]
    assert suggested(d, "BINANCE:1000SHIBUSD") == ["BINANCE:1000SHIBUSDT"]
    assert suggested(d, "OANDA:EURUSD") == ["OANDA:EUR_USD"]
    assert suggested(d, "X" * LONG_SYMBOL) == [too_long]  # one edit: looked up in the directory
    assert suggested(d, "X" * (LONG_SYMBOL - 1)) == []  # two: tickers past the bound are not in the index


def test_the_edits_tried_on_a_short_symbol_are_the_characters_of_a_symbol() -> None:
    assert all(valid_symbol(c) == c for c in SYMBOL_CHARS)
    assert [c for c in map(chr, range(32, 127)) if valid_symbol(c) == c] == sorted(SYMBOL_CHARS)
    d = directory([("A/B", "Slash"), ("A_B", "Underscore"), ("A:B", "Colon")])
    assert suggested(d, "AB", 5) == ["A/B", "A:B", "A_B"]


def test_short_symbols_are_one_edit_away_at_most() -> None:
    d = directory([("ABCD", "Four"), ("AB", "Two")])
    assert suggested(d, "XYCD") == []  # two edits: too far for 4 characters
    assert suggested(d, "XBCD") == ["ABCD"]
    assert suggested(d, "ABCDXY") == ["ABCD"]  # a long symbol: two edits
    assert suggested(d, "ABCDXYZ") == []
    d2 = directory([("ABCDE", "Five")])
    assert suggested(d2, "XBCDY") == ["ABCDE"]  # two substitutions in a long symbol


def test_suggestions_respect_allow(d: Directory) -> None:
    assert suggested(d, "APPL", 3, allow=lambda s: s != "AAPL") == ["APPF", "APPN", "APP"]


def osa(a: str, b: str) -> int:
    """Reference optimal-string-alignment distance (full table)."""
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        t[i][0] = i
    for j in range(len(b) + 1):
        t[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            t[i][j] = min(t[i - 1][j] + 1, t[i][j - 1] + 1, t[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                t[i][j] = min(t[i][j], t[i - 2][j - 2] + 1)
    return t[-1][-1]


@pytest.mark.parametrize(
    ("prefix", "lengths", "count", "typos"),
    [
        ("", (1, 7), 800, 150),  # short and long tickers, some with a "."
        ("BINANCE:", (3, 8), 400, 60),  # venue pairs: long, sharing their first 8 characters
    ],
)
def test_suggest_finds_every_ticker_within_reach(
    prefix: str, lengths: tuple[int, int], count: int, typos: int
) -> None:
    """Against a brute force over a dense random directory (few letters, so neighbours abound)."""
    rng = random.Random(5)
    letters = "ABCDE"
    syms = {prefix + "".join(rng.choices(letters, k=rng.randint(*lengths))) for _ in range(count)}
    syms |= {s[:2] + "." + s[2:] for s in sorted(syms)[:100] if len(s) > 3}
    assert max(map(len, syms)) <= LONG_SYMBOL
    d = directory([(s, f"Name {s}") for s in syms])
    fresh = directory([(s, f"Name {s}") for s in syms], indexed=False)
    checked = 0
    for _ in range(typos):
        base = rng.choice(sorted(syms))
        q = list(base)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(q) + 1)
            op = rng.choice("idst")
            if op == "i":
                q.insert(i, rng.choice(letters))
            elif op == "t" and i + 1 < len(q):
                q[i], q[i + 1] = q[i + 1], q[i]
            elif q and i < len(q):
                if op == "d" and len(q) > 1:
                    del q[i]
                else:
                    q[i] = rng.choice(letters)
        typo = "".join(q)
        if typo in syms or len(typo) < 2:
            continue
        most = 1 if len(typo) <= 4 else 2
        expected = {s for s in syms if abs(len(s) - len(typo)) <= most and osa(typo, s) <= most}
        got = suggested(d, typo, 10_000, prefer=())
        assert set(got) == expected, typo
        assert suggested(d, typo, 3, prefer=()) == got[:3]  # the same first ones, however few are asked for
        # Without an index: the ones one edit away (all of them, for a symbol of up to 4 characters).
        assert suggested(fresh, typo, 10_000, prefer=()) == [s for s in got if osa(typo, s) == 1]
        assert [osa(typo, s) for s in got] == sorted(osa(typo, s) for s in got)
        checked += len(expected) > 1 and any(osa(typo, s) == 2 for s in expected)
    assert checked > typos // 8  # many typos had several neighbours, some two edits away


def test_distance_matches_the_reference() -> None:
    """The edit distance used to rank (common start and end skipped) against the full table."""
    rng = random.Random(9)
    for _ in range(3000):
        a = "".join(rng.choices("ABC", k=rng.randint(0, 8)))
        b = "".join(rng.choices("ABC", k=rng.randint(0, 8)))
        assert _distance(a, b, 2) == min(osa(a, b), 3), (a, b)
