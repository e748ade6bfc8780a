"""Reading provider wire values: numbers (JSON or decimal strings), timestamps and the trade and
top-of-book fields Alpaca and Polygon share (pure, no I/O).

Every helper raises :class:`Malformed` on bad input, which the streaming base counts as a
``malformed`` feed error and survives.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from feeds.errors import Malformed

#: What parsing a message of the wrong shape may raise; the streaming base counts these as ``malformed``.
PARSE_ERRORS = (Malformed, KeyError, TypeError, ValueError, IndexError, AttributeError)


def num(value: Any, field: str = "value") -> float:
    """A finite number from a JSON number or a decimal string such as ``"1285.22"``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Malformed(f"{field}: expected a number, got {type(value).__name__}")
    try:
        out = float(value)
    except ValueError:
        raise Malformed(f"{field}: not a number: {str(value)[:40]!r}") from None
    if not math.isfinite(out):
        raise Malformed(f"{field}: not finite")
    return out


def opt_num(value: Any, field: str = "value") -> float | None:
    """Like :func:`num` but ``None`` (and an empty string) stays ``None``."""
    if value is None or value == "":
        return None
    return num(value, field)


def text(value: Any, field: str = "value") -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        raise Malformed(f"{field}: expected a non-empty string")
    return value


def epoch_ms(value: Any, field: str = "t") -> int:
    """An integer epoch-milliseconds timestamp."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Malformed(f"{field}: expected epoch milliseconds")
    return int(value)


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def rfc3339_ms(value: Any, field: str = "time") -> int:
    """Epoch milliseconds of an RFC 3339 time like ``2021-02-22T15:51:45.335689322Z`` (ns allowed)."""
    m = _RFC3339.match(value) if isinstance(value, str) else None
    if m is None:
        raise Malformed(f"{field}: expected an RFC 3339 time")
    base, frac, zone = m.groups()
    try:
        dt = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        raise Malformed(f"{field}: invalid date") from None
    if dt.tzinfo is None:  # pragma: no cover - the pattern always has a zone
        dt = dt.replace(tzinfo=UTC)
    ms = int((frac or "0")[:3].ljust(3, "0"))
    return int(dt.timestamp()) * 1000 + ms


def trade_fields(item: dict[str, Any]) -> dict[str, float]:
    """Price and size of a trade whose fields are ``p`` and ``s`` (Alpaca's and Polygon's shape; no ``s``: 0)."""
    return {"price": num(item.get("p"), "p"), "size": num(item.get("s", 0), "s")}


def book_fields(item: dict[str, Any]) -> dict[str, float]:
    """Bid and ask of a top-of-book quote whose fields are ``bp`` and ``ap`` (Alpaca's and Polygon's shape)."""
    return {"bid": num(item.get("bp"), "bp"), "ask": num(item.get("ap"), "ap")}
