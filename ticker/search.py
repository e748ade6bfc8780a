"""Search over the symbol directory (pure): by ticker and by name, and "did you mean" for a typo.

:func:`search` ranks (docs/protocol.md, ``/api/search``): 1) the exact ticker; 2) tickers starting
with the text, shorter first; 3) names in which every word of the text starts a word; 4) names
containing every word anywhere; ties by ticker. Case, accents and punctuation do not count.

:func:`suggest` offers the known tickers closest to an unknown one: at most one edit (an insertion,
a deletion, a substitution or two adjacent letters swapped) for symbols up to 4 characters, two for
longer ones; closest first, then well-known tickers.

Both work on an index of the directory (:class:`SearchIndex`), built on the first query after the
directory changed (:attr:`~ticker.directory.Directory.version`), never a scan per query.
"""

from __future__ import annotations

import unicodedata
import weakref
from array import array
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable, Iterator
from itertools import combinations

from ticker.directory import Directory, SymbolInfo
from ticker.symbols import DEFAULT_UNIVERSE, valid_symbol

MAX_TEXT = 64  # characters of a query looked at
MAX_WORDS = 8  # words of a query looked at
SHORT_SYMBOL = 4  # up to this length a suggestion is one edit away; longer ones, two
FEW = 32  # candidates few enough to check one by one

_END = "\U0010ffff"  # sorts after every word: [w, w + _END) is the range of words starting with w
_DROP = str.maketrans("", "", "'\u2019")  # "McDonald's" is "mcdonalds"

#: Who may see a symbol (the caller's entitlements); None: everyone may see everything.
Allow = Callable[[str], bool] | None


def words(text: str) -> list[str]:
    """The words of ``text``: case-folded, accents and apostrophes dropped, other punctuation a space."""
    folded = unicodedata.normalize("NFKD", text.translate(_DROP)).casefold()
    return "".join(c if c.isalnum() else " " for c in folded if not unicodedata.combining(c)).split()


def query_words(text: str) -> list[str]:
    """The words a query searches names for: the first :data:`MAX_WORDS` distinct ones of its first
    :data:`MAX_TEXT` characters."""
    return list(dict.fromkeys(words(text[:MAX_TEXT])))[:MAX_WORDS]


class SearchIndex:
    """The entries of one version of a directory, arranged for fast search (built again, not updated).

    ``entries`` are sorted by ticker, so an entry's position (its id) orders ties. Tickers are also
    kept per length for the prefix rule; names as ``" word word"`` strings, one word list with each
    word's ids, and one ``\\n``-separated text of every name for the "contains" rule. The "did you
    mean" part (a hash index of deletions) is built on the first long symbol suggested for.
    """

    def __init__(self, entries: Iterable[SymbolInfo]) -> None:
        self.entries = sorted(entries, key=lambda e: e.symbol)
        self.tickers = [e.symbol for e in self.entries]
        by_len: dict[int, list[str]] = {}
        for t in self.tickers:  # in sorted order: each list stays sorted
            by_len.setdefault(len(t), []).append(t)
        self.by_len = sorted(by_len.items())
        self._id = {t: i for i, t in enumerate(self.tickers)}
        postings: dict[str, list[int]] = {}
        names: list[str] = []
        for i, e in enumerate(self.entries):
            ws = words(e.name)
            names.append(" " + " ".join(ws))
            for w in dict.fromkeys(ws):
                postings.setdefault(w, []).append(i)
        self.names = names
        self.words = sorted(postings)
        self.postings = [postings[w] for w in self.words]
        self.blob = "\n".join(names)
        self.starts: list[int] = []
        pos = 0
        for n in names:
            self.starts.append(pos)
            pos += len(n) + 1
        self._alphabet: str | None = None  # built on the first suggestion
        self._deletes: tuple[array[int], array[int]] | None = None

    # -- search ------------------------------------------------------------------------------
    def prefixed(self, prefix: str) -> Iterator[str]:
        """Tickers starting with ``prefix``, shorter first, then in order."""
        for length, tickers in self.by_len:
            if length < len(prefix):
                continue
            i = bisect_left(tickers, prefix)
            while i < len(tickers) and tickers[i].startswith(prefix):
                yield tickers[i]
                i += 1

    def word_starts(self, ws: list[str]) -> list[int]:
        """Ids (sorted) of names in which every word of ``ws`` starts a word."""
        found: set[int] | None = None
        for w in sorted(ws, key=len, reverse=True):  # the longest first: usually the fewest ids
            if found is not None and len(found) <= FEW:  # few left: look at their names
                found = {i for i in found if " " + w in self.names[i]}
            else:
                ids: set[int] = set()
                lo = bisect_left(self.words, w)
                hi = bisect_left(self.words, w + _END, lo)
                for p in self.postings[lo:hi]:
                    ids.update(p)
                found = ids if found is None else found & ids
            if not found:
                return []
        return sorted(found or ())

    def containing(self, ws: list[str]) -> Iterator[int]:
        """Ids, in order, of names containing every word of ``ws`` anywhere."""
        blob = self.blob
        rare = max(ws, key=len)  # find the longest one (usually the rarest), check the others per name
        others = [w for w in ws if w != rare]
        names, starts = self.names, self.starts
        pos = blob.find(rare)
        while pos >= 0:
            i = bisect_left(starts, pos + 1) - 1
            name = names[i]
            if all(w in name for w in others):
                yield i
            pos = blob.find(rare, starts[i] + len(name))  # on to the next name

    def search(self, text: str, limit: int, allow: Allow = None) -> list[SymbolInfo]:
        """At most ``limit`` entries matching ``text``, best first (the module's ranking)."""
        if limit <= 0:
            return []
        out: list[SymbolInfo] = []
        seen: set[int] = set()

        def take(i: int) -> bool:
            """Add entry ``i`` unless seen or not allowed; True once ``limit`` is reached."""
            if i not in seen:
                seen.add(i)
                e = self.entries[i]
                if allow is None or allow(e.symbol):
                    out.append(e)
            return len(out) >= limit

        ticker = valid_symbol(text[:MAX_TEXT])
        if ticker is not None:
            for t in self.prefixed(ticker):  # the exact ticker is the shortest of them
                if take(self._id[t]):
                    return out
        ws = query_words(text)
        if not ws:
            return out
        for i in self.word_starts(ws):
            if take(i):
                return out
        for i in self.containing(ws):
            if take(i):
                return out
        return out

    # -- did you mean ------------------------------------------------------------------------
    def suggest(
        self, symbol: str, limit: int, prefer: Collection[str], allow: Allow = None
    ) -> list[SymbolInfo]:
        """The known tickers closest to the unknown ``symbol`` (already normalized)."""
        n = len(symbol)
        if n < 2 or limit <= 0 or symbol in self._id:
            return []
        if n <= SHORT_SYMBOL:
            found = dict.fromkeys((t for t in self._near(symbol) if t in self._id), 1)
        else:
            found = {}
            for i in self._sharing_deletions(symbol):
                t = self.tickers[i]
                if t not in found:
                    found[t] = _distance(symbol, t, 2)
        ranked = sorted(
            (d, t not in prefer, t[0] != symbol[0], abs(len(t) - n), t)
            for t, d in found.items()
            if d <= 2 and (allow is None or allow(t))
        )
        return [self.entries[self._id[r[-1]]] for r in ranked[:limit]]

    def _near(self, s: str) -> Iterator[str]:
        """Every string one edit away from ``s``, in the characters tickers use."""
        if self._alphabet is None:
            self._alphabet = "".join(sorted(set("".join(self.tickers))))
        for i in range(len(s)):
            yield s[:i] + s[i + 1 :]
            if i + 1 < len(s):
                yield s[:i] + s[i + 1] + s[i] + s[i + 2 :]
            for c in self._alphabet:
                yield s[:i] + c + s[i + 1 :]
        for i in range(len(s) + 1):
            for c in self._alphabet:
                yield s[:i] + c + s[i:]

    def _sharing_deletions(self, s: str) -> set[int]:
        """Ids of tickers that may be within two edits of ``s`` (5 characters or more): those sharing
        with it a string left by deleting up to two characters of each (a symmetric-delete index;
        the shared string is at least 3 long). The index holds hashes, so a few strays come along."""
        if self._deletes is None:
            pairs = sorted(
                (hash(key), i)
                for i, t in enumerate(self.tickers)
                if len(t) >= 3
                for key in _deletions(t, 2, 3)
            )
            self._deletes = (array("q", [h for h, _ in pairs]), array("i", [i for _, i in pairs]))
        hashes, ids = self._deletes
        out: set[int] = set()
        for key in _deletions(s, 2, 3):
            h = hash(key)
            j = bisect_left(hashes, h)
            while j < len(hashes) and hashes[j] == h:
                out.add(ids[j])
                j += 1
        return out


def _deletions(s: str, most: int, shortest: int) -> set[str]:
    """``s`` and the strings left by deleting up to ``most`` of its characters, none shorter than ``shortest``."""
    out = {s}
    for k in range(1, min(most, len(s) - shortest) + 1):
        for gone in combinations(range(len(s)), k):
            out.add("".join(c for j, c in enumerate(s) if j not in gone))
    return out


def _distance(a: str, b: str, most: int) -> int:
    """Edit distance of ``a`` and ``b`` counting a swap of two adjacent characters as one edit
    (optimal string alignment); anything above ``most`` is ``most + 1``."""
    if abs(len(a) - len(b)) > most:
        return most + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > most:
            return most + 1
        prev2, prev = prev, cur
    return min(prev[-1], most + 1)


_indexes: weakref.WeakKeyDictionary[Directory, tuple[int, SearchIndex]] = weakref.WeakKeyDictionary()


def index_of(directory: Directory) -> SearchIndex:
    """``directory``'s index, rebuilt when its entries changed since the last query."""
    cached = _indexes.get(directory)
    if cached is not None and cached[0] == directory.version:
        return cached[1]
    version = directory.version
    index = SearchIndex(list(directory.entries()))  # a snapshot: this may run in a thread (the loaders)
    _indexes[directory] = (version, index)
    return index


def search(directory: Directory, text: str, limit: int = 10, allow: Allow = None) -> list[SymbolInfo]:
    """At most ``limit`` entries of ``directory`` matching ``text``, best first; ``allow`` filters."""
    return index_of(directory).search(text, limit, allow)


def suggest(
    directory: Directory,
    symbol: str,
    limit: int = 3,
    prefer: Collection[str] = DEFAULT_UNIVERSE,
    allow: Allow = None,
) -> list[SymbolInfo]:
    """For a well-formed ``symbol`` the directory does not know, the closest known entries.

    Nearest first; among equally near ones those in ``prefer`` (well-known tickers), then those with
    the same first letter, then the same length. A known or malformed symbol gets none.
    """
    sym = valid_symbol(symbol)
    if sym is None:
        return []
    return index_of(directory).suggest(sym, limit, prefer, allow)
