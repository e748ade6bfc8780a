"""The bundled directory of well-known US stocks and ETFs: ``feeds/data/us_directory.csv`` (package data).

One row per symbol: ``symbol,name,exchange,type,currency,price``, the name as listed, the listing
exchange, ``stock`` or ``etf``, and a rough recent price (empty when none is given) that the simulated
market starts from.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources

from ticker.directory import ASSET_TYPES, SymbolInfo
from ticker.symbols import valid_symbol

COLUMNS = ["symbol", "name", "exchange", "type", "currency", "price"]


@dataclass(frozen=True, slots=True)
class Listing:
    """One row of the bundled directory: the symbol's reference data and a rough price (None: none given)."""

    info: SymbolInfo
    price: float | None = None


def parse_listings(text: str) -> dict[str, Listing]:
    """The rows of a directory CSV by symbol; raises ``ValueError`` naming the line of a bad row."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames != COLUMNS:
        raise ValueError(f"directory columns must be {','.join(COLUMNS)}, not {reader.fieldnames}")
    out: dict[str, Listing] = {}
    for row in reader:
        where = f"directory line {reader.line_num}"
        symbol = valid_symbol(row["symbol"])
        if symbol is None or symbol != row["symbol"]:
            raise ValueError(f"{where}: bad symbol {row['symbol']!r}")
        if symbol in out:
            raise ValueError(f"{where}: {symbol} listed twice")
        if not row["name"] or row["type"] not in ASSET_TYPES:
            raise ValueError(f"{where}: {symbol} needs a name and a type of {', '.join(ASSET_TYPES)}")
        price = float(row["price"]) if row["price"] else None
        if price is not None and not price > 0:
            raise ValueError(f"{where}: {symbol} has price {price}")
        info = SymbolInfo(symbol, row["name"], row["exchange"], row["type"], row["currency"] or "USD")
        out[symbol] = Listing(info, price)
    return out


@functools.cache
def us_listings() -> dict[str, Listing]:
    """The bundled US directory, read once (shared: do not modify)."""
    text = (resources.files("feeds") / "data" / "us_directory.csv").read_text(encoding="utf-8")
    return parse_listings(text)
