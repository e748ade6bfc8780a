"""What a client asks of its quote stream (pure): a maximum rate per symbol, a selection of fields, deltas.

``max_hz`` travels in each ``subscribe`` request (the rate of that request's symbols); ``fields`` and
``delta`` are per connection: in the ``/ws`` URL query from the start, ``{"op":"options"}`` after.
Everything is checked here before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from math import isfinite

from ticker.client.models import BadRequestError
from ticker.views import FIELDS, MIN_HZ

#: Query parameters the client sets itself on ``/ws`` (a URL given with them is refused).
OWN_PARAMS = ("max_hz", "fields", "delta")


def check_max_hz(max_hz: object) -> float | None:
    """``max_hz`` as a float (None: unthrottled); :class:`BadRequestError` unless a finite number >= 0.1."""
    if max_hz is None:
        return None
    if isinstance(max_hz, bool) or not isinstance(max_hz, int | float) or not isfinite(max_hz):
        raise BadRequestError(f"max_hz must be a finite number, got {max_hz!r}")
    if max_hz < MIN_HZ:
        raise BadRequestError(f"max_hz must be at least {MIN_HZ} entries per second, got {max_hz!r}")
    return float(max_hz)


def check_fields(fields: Iterable[str] | str | None) -> tuple[str, ...] | None:
    """The selected fields in the Q entry's order (None: all); a string is split at commas.

    :class:`BadRequestError` for unknown names (named), an empty selection, or one without ``p``: a
    :class:`~ticker.quote.Quote` needs its price, so the client always selects it.
    """
    if fields is None:
        return None
    names = fields.split(",") if isinstance(fields, str) else list(fields)
    if not all(isinstance(f, str) for f in names):
        raise BadRequestError("fields must be field names (strings)")
    names = [f.strip() for f in names]
    unknown = sorted({f for f in names if f not in FIELDS})
    if unknown:
        raise BadRequestError(f"unknown fields: {', '.join(unknown)} (known: {' '.join(FIELDS)})")
    if not names:
        raise BadRequestError("fields must name at least one field (None selects them all)")
    if "p" not in names:
        raise BadRequestError("fields must include p: the client's quotes need a price")
    chosen = set(names)
    return tuple(f for f in FIELDS if f in chosen)


def query_params(fields: tuple[str, ...] | None, delta: bool) -> dict[str, str]:
    """The ``/ws`` query parameters of the connection options (empty for the defaults)."""
    params: dict[str, str] = {}
    if fields is not None:
        params["fields"] = ",".join(fields)
    if delta:
        params["delta"] = "1"
    return params


def rate_groups(symbols: Iterable[str], wanted: Mapping[str, float]) -> list[tuple[list[str], float | None]]:
    """``symbols`` grouped by the rate wanted for each (``wanted`` lacks the unthrottled ones): one
    ``subscribe`` per group, the unthrottled first, then by rising rate."""
    groups: dict[float | None, list[str]] = {}
    for s in symbols:
        groups.setdefault(wanted.get(s), []).append(s)
    order = sorted(groups, key=lambda rate: -1.0 if rate is None else rate)
    return [(groups[rate], rate) for rate in order]
