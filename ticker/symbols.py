"""Symbol syntax rules and the default symbol universe (pure, no I/O)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable

from ticker.errors import InvalidSymbol

SYMBOL_RE = re.compile(r"^[A-Z0-9.\-:/_]{1,32}$")

#: About 30 liquid US tickers with plausible reference prices (the simulated market's base prices).
DEFAULT_UNIVERSE: dict[str, float] = {
    "AAPL": 228.50,
    "MSFT": 415.30,
    "NVDA": 134.20,
    "AMZN": 201.40,
    "GOOGL": 172.60,
    "META": 580.10,
    "TSLA": 251.70,
    "BRK.B": 462.80,
    "JPM": 224.90,
    "V": 289.40,
    "UNH": 590.20,
    "XOM": 118.30,
    "JNJ": 156.70,
    "WMT": 84.10,
    "MA": 512.60,
    "PG": 169.80,
    "AVGO": 168.90,
    "HD": 402.50,
    "CVX": 155.20,
    "KO": 63.40,
    "PEP": 163.70,
    "COST": 905.30,
    "ORCL": 181.60,
    "BAC": 42.80,
    "NFLX": 760.40,
    "AMD": 142.10,
    "ADBE": 512.90,
    "CRM": 318.40,
    "INTC": 23.10,
    "DIS": 96.80,
    "SPY": 585.20,
    "QQQ": 505.60,
}


#: The whitespace a symbol may be padded with (ASCII only: a no-break space is not stripped).
ASCII_SPACE = " \t\n\r\f\v"


def valid_symbol(raw: object) -> str | None:
    """``raw`` stripped and upper-cased if it is a valid symbol, else None (no exception is built).

    Only ASCII is looked at: anything else is refused before case folding, so ``ﬁ`` never becomes
    ``FI``, ``ß`` never ``SS``, and a no-break space is not stripped.
    """
    if not isinstance(raw, str) or not raw.isascii():
        return None
    sym = raw.strip(ASCII_SPACE).upper()
    # interned: a thousand connections of 500 symbols share 500 strings, not 500,000 (32 MB of small objects)
    return sys.intern(sym) if SYMBOL_RE.match(sym) else None


def normalize_symbol(raw: object) -> str:
    """Return ``raw`` upper-cased if it is a valid symbol, else raise :class:`InvalidSymbol`."""
    sym = valid_symbol(raw)
    if sym is None:
        raise InvalidSymbol(raw)
    return sym


def normalize_symbols(raw: Iterable[object]) -> list[str]:
    """Normalize every symbol in ``raw``, keeping first-seen order and dropping duplicates."""
    out: dict[str, None] = {}
    for item in raw:
        out[normalize_symbol(item)] = None
    return list(out)


def parse_symbol_list(text: str) -> list[str]:
    """Parse a comma-separated list such as ``"aapl, MSFT"``; empty items are ignored."""
    return normalize_symbols(part for part in text.split(",") if part.strip())
