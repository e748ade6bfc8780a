"""Search over the symbol directory (pure): by ticker and by name, and "did you mean" for a typo.

:func:`search` ranks (docs/protocol.md, ``/api/search``): 1) the exact ticker; 2) tickers starting
with the text, shorter first; 3) names in which every word of the text starts a word; 4) names
containing every word anywhere; ties by ticker. Case, accents and punctuation do not count.

:func:`suggest` offers the known tickers closest to an unknown one: at most one edit (an insertion,
a deletion, a substitution or two adjacent letters swapped) for symbols up to 4 characters, two for
longer ones; closest first, then well-known tickers.

Both work on indexes of the directory, never a scan per query. :func:`index_of` builds them after the
directory changed (:attr:`~ticker.directory.Directory.version`); the feed runner and the Redis edge
call it in a thread after each change, so the event loop does not. A search finding its index out of
date builds the search part itself (only in the moment between a change and that build). A suggestion
never builds anything: the tickers one edit away are looked up in the directory itself, and those two
edits away in the last "did you mean" index built (its finds checked against the directory); before
the first is built, a long symbol gets only the one-edit suggestions.
"""

from __future__ import annotations

import string
import unicodedata
import weakref
from array import array
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence

from ticker.directory import Directory, SymbolInfo
from ticker.symbols import DEFAULT_UNIVERSE, valid_symbol

MAX_TEXT = 64  # characters of a query looked at
MAX_WORDS = 8  # words of a query looked at
SHORT_SYMBOL = 4  # up to this length a suggestion is one edit away; longer ones, two
LONG_SYMBOL = 20  # longer tickers are left out of the "did you mean" index (bounds its keys per ticker)
FEW = 32  # candidates few enough to check one by one

#: Every character a symbol may hold (:data:`ticker.symbols.SYMBOL_RE`): the edits tried on a short typo.
SYMBOL_CHARS = string.ascii_uppercase + string.digits + ".-:/_"

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
    word's ids, and one ``\\n``-separated text of every name for the "contains" rule.
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


class TypoIndex:
    """The "did you mean" index of long symbols (5 characters or more) over one version's tickers.

    A symmetric-delete index: a ticker within two edits of the symbol shares with it a string left by
    deleting up to two characters of each, at least 3 long. Each such string of every ticker of 3 to
    :data:`LONG_SYMBOL` characters is kept as its hash with the ticker's id in the low bits, one
    sorted ``array`` per top byte of the hash (8 bytes a key, built without a list of them all). A
    hash may stand for several strings, so a few strays come along; :func:`suggest` checks them.
    """

    def __init__(self, tickers: Sequence[str]) -> None:
        self.tickers = tickers  # sorted; an id is a position
        self._bits = max(1, (len(tickers) - 1).bit_length())
        high = -1 << self._bits
        parts: list[array[int]] = [array("q") for _ in range(256)]
        for i, t in enumerate(tickers):
            if 3 <= len(t) <= LONG_SYMBOL:
                for h in [(hash(k) & high) | i for k in _deletions(t)]:
                    parts[(h >> 56) + 128].append(h)
        self._parts = [array("q", sorted(p)) for p in parts]

    def near(self, symbol: str) -> set[str]:
        """Tickers that may be within two edits of ``symbol`` (and a few that are not)."""
        if len(symbol) > LONG_SYMBOL + 2:
            return set()
        bits, tickers = self._bits, self.tickers
        high, low = -1 << bits, (1 << bits) - 1
        out: set[str] = set()
        for key in _deletions(symbol):
            h = hash(key) & high
            part = self._parts[(h >> 56) + 128]
            j = bisect_left(part, h)
            while j < len(part) and part[j] & high == h:
                out.add(tickers[part[j] & low])
                j += 1
        return out


def _deletions(s: str) -> set[str]:
    """``s`` and the strings left by deleting one or two of its characters, none shorter than 3."""
    n = len(s)
    out = {s}
    if n > 3:
        out.update([s[:i] + s[i + 1 :] for i in range(n)])
    if n > 4:
        out.update([s[:i] + s[i + 1 : j] + s[j + 1 :] for i in range(n - 1) for j in range(i + 1, n)])
    return out


def _near(s: str) -> Iterator[str]:
    """Every symbol one edit away from ``s``."""
    for i in range(len(s)):
        yield s[:i] + s[i + 1 :]
        if i + 1 < len(s):
            yield s[:i] + s[i + 1] + s[i] + s[i + 2 :]
        for c in SYMBOL_CHARS:
            yield s[:i] + c + s[i + 1 :]
    for i in range(len(s) + 1):
        for c in SYMBOL_CHARS:
            yield s[:i] + c + s[i:]


def _distance(a: str, b: str, most: int) -> int:
    """Edit distance of ``a`` and ``b`` counting a swap of two adjacent characters as one edit
    (optimal string alignment); anything above ``most`` is ``most + 1``."""
    if abs(len(a) - len(b)) > most:
        return most + 1
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:  # a common start and end cost nothing: align what lies between
        i += 1
    k = 0
    while k < n - i and a[-1 - k] == b[-1 - k]:
        k += 1
    a, b = a[i : len(a) - k], b[i : len(b) - k]
    if not a or not b:
        return min(len(a) + len(b), most + 1)
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


# The newest index of each directory, with the version it was built from. A thread (index_of) may
# write them while the event loop reads them: each is one dictionary item, replaced whole.
_indexes: weakref.WeakKeyDictionary[Directory, tuple[int, SearchIndex]] = weakref.WeakKeyDictionary()
_typos: weakref.WeakKeyDictionary[Directory, tuple[int, TypoIndex]] = weakref.WeakKeyDictionary()


def _search_index(directory: Directory) -> tuple[int, SearchIndex]:
    """``directory``'s search index and its version, built if the entries changed since."""
    version = directory.version  # read before the entries: an index is never newer than its version
    cached = _indexes.get(directory)
    if cached is not None and cached[0] == version:
        return cached
    built = version, SearchIndex(list(directory.entries()))  # a snapshot: this may run in a thread
    cached = _indexes.get(directory)
    if cached is None or cached[0] < version:  # a slower build of an older version does not win
        _indexes[directory] = built
    return built


def index_of(directory: Directory) -> SearchIndex:
    """``directory``'s indexes, built for its current entries if they changed: the search index
    (returned) and the "did you mean" one. This takes a while on a large directory (about 0.5 s for
    30,000 symbols, bench/search_latency.py): run it beside the event loop (``asyncio.to_thread``)
    after each change of the directory."""
    version, index = _search_index(directory)
    typos = _typos.get(directory)
    if typos is None or typos[0] < version:
        _typos[directory] = (version, TypoIndex(index.tickers))
    return index


def search(directory: Directory, text: str, limit: int = 10, allow: Allow = None) -> list[SymbolInfo]:
    """At most ``limit`` entries of ``directory`` matching ``text``, best first; ``allow`` filters."""
    return _search_index(directory)[1].search(text, limit, allow)


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

    The tickers one edit away are looked up in the directory, with no index. Only when they are
    fewer than ``limit`` does a symbol of 5 characters or more look two edits away, in the "did you
    mean" index that :func:`index_of` built last (before any, it gets the one-edit ones only: this
    never builds an index). Tickers longer than :data:`LONG_SYMBOL` are not in that index.
    """
    sym = valid_symbol(symbol)
    if sym is None or len(sym) < 2 or limit <= 0 or directory.get(sym) is not None:
        return []
    found: dict[str, int] = {}  # ticker: distance
    for t in _near(sym):
        if t not in found and directory.get(t) is not None and (allow is None or allow(t)):
            found[t] = 1
    if len(sym) > SHORT_SYMBOL and len(found) < limit:  # two edits away, after every one-edit ticker
        typos = _typos.get(directory)
        near = typos[1].near(sym) if typos is not None else set()  # maybe an older version's index,
        for t in near:  # so each find is checked against the directory
            if (
                t not in found
                and directory.get(t) is not None
                and (d := _distance(sym, t, 2)) <= 2
                and (allow is None or allow(t))
            ):
                found[t] = d
    ranked = sorted((d, t not in prefer, t[0] != sym[0], abs(len(t) - len(sym)), t) for t, d in found.items())
    return [e for r in ranked[:limit] if (e := directory.get(r[-1])) is not None]
