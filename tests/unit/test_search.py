"""Search over the symbol directory (:mod:`ticker.search`): its ranking, normalization and limits, the index
following the directory, and "did you mean"."""

from __future__ import annotations

import random
import string

import pytest

from ticker.directory import Directory, SymbolInfo
from ticker.search import MAX_WORDS, query_words, search, suggest

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


def directory(entries: list[tuple[str, str]] = ENTRIES) -> Directory:
    d = Directory()
    d.replace("test", [SymbolInfo(s, name, "NASDAQ") for s, name in entries])
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
    d.add("test", [SymbolInfo("TSLA", "Tesla, Inc.")])
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


def test_suggest_finds_every_ticker_within_reach() -> None:
    """Against a brute force over a dense random directory (few letters, so neighbours abound)."""
    rng = random.Random(5)
    alphabet = "ABCDE."
    syms = {"".join(rng.choices(alphabet[:-1], k=rng.randint(1, 7))) for _ in range(800)}
    syms |= {s[:2] + "." + s[2:] for s in list(syms)[:100] if len(s) > 3}
    d = directory([(s, f"Name {s}") for s in syms])
    checked = 0
    for _ in range(150):
        base = rng.choice(sorted(syms))
        q = list(base)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(q) + 1)
            op = rng.choice("ids")
            if op == "i":
                q.insert(i, rng.choice(alphabet[:-1]))
            elif q and i < len(q):
                if op == "d" and len(q) > 1:
                    del q[i]
                else:
                    q[i] = rng.choice(alphabet[:-1])
        typo = "".join(q)
        if typo in syms or len(typo) < 2:
            continue
        most = 1 if len(typo) <= 4 else 2
        expected = {s for s in syms if abs(len(s) - len(typo)) <= most and osa(typo, s) <= most}
        got = suggested(d, typo, 10_000, prefer=())
        assert set(got) == expected, typo
        assert [osa(typo, s) for s in got] == sorted(osa(typo, s) for s in got)
        checked += len(expected) > 1 and any(osa(typo, s) == 2 for s in expected)
    assert checked > 20  # many typos had several neighbours, some two edits away
