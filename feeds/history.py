"""What every provider adapter's ``load_history`` shares: bounded GETs of a history endpoint, rows checked
into :class:`~ticker.bars.Bar`\\ s, request windows and pacing.

A history load is a few requests (a page cap, :data:`MAX_PAGES`), each timing out (:data:`TIMEOUT`), its
body capped (:data:`MAX_BODY`), no redirects followed; errors are :mod:`feeds.errors` as for reference data
(:func:`feeds.reference.get_body`: 401/403 :class:`AuthFailed`, 429 :class:`RateLimited` with the
``Retry-After``, other statuses and network failures :class:`UpstreamError`, a body of the wrong shape
:class:`Malformed`), which the caller retries later. A row that is null (Yahoo's intervals without trades)
or invalid (not finite, not positive, ``l`` above ``o``/``c`` or ``h`` below them, negative volume) is
skipped; what is returned is sorted oldest first, one bar per start, within ``[start_ms, end_ms)``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp

from feeds import reference
from feeds.errors import Malformed, RateLimited
from feeds.wire import num
from ticker.bars import Bar
from ticker.tokenbucket import TokenBucket

TIMEOUT = 30.0  # seconds for one history request, body included
MAX_BODY = 16 * 1024 * 1024  # bytes of one history response (10,000 bars are about 1.5 MB)
MAX_PAGES = 20  # requests of one load at most (pages or windows); past it, the newest part is kept
MAX_WAIT = 30.0  # seconds a load may wait for the plan's rate; longer: RateLimited (the caller retries later)


def session(timeout: float = TIMEOUT) -> aiohttp.ClientSession:
    """A short-lived client session for one history load."""
    return reference.session(timeout)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        out = float(value)
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def bar_of(t_ms: Any, o: Any, h: Any, l: Any, c: Any, v: Any = 0) -> Bar | None:  # noqa: E741
    """A :class:`Bar` from a provider's row (numbers or decimal strings), None for a null or invalid one."""
    if isinstance(t_ms, bool) or not isinstance(t_ms, int | float) or not math.isfinite(t_ms):
        return None
    op, hi, lo, cl = _number(o), _number(h), _number(l), _number(c)
    vol = 0.0 if v is None else _number(v)
    if op is None or hi is None or lo is None or cl is None or vol is None:
        return None
    if lo <= 0 or vol < 0 or lo > min(op, cl) or hi < max(op, cl):
        return None
    return Bar(int(t_ms), op, hi, lo, cl, vol)


def stream_bar(t_ms: int, item: dict[str, Any], what: str) -> Bar:
    """A provider's live bar (Polygon ``AM``, Alpaca ``b``/``u``) starting at ``t_ms`` from the item's ``o``,
    ``h``, ``l``, ``c`` and ``v`` (absent: 0); :class:`~feeds.errors.Malformed` naming ``what`` when invalid."""
    bar = bar_of(
        t_ms,
        num(item.get("o"), "o"),
        num(item.get("h"), "h"),
        num(item.get("l"), "l"),
        num(item.get("c"), "c"),
        num(item.get("v", 0), "v"),
    )
    if bar is None:
        raise Malformed(f"{what}: low above open/close or high below them, or a negative volume")
    return bar


class BarRows:
    """The bars of one load: valid rows kept, null or invalid ones counted in :attr:`skipped`."""

    def __init__(self) -> None:
        self.bars: list[Bar] = []
        self.skipped = 0

    def add(self, t_ms: Any, o: Any, h: Any, l: Any, c: Any, v: Any = 0) -> None:  # noqa: E741
        bar = bar_of(t_ms, o, h, l, c, v)
        if bar is None:
            self.skipped += 1
        else:
            self.bars.append(bar)

    def result(self, start_ms: int, end_ms: int) -> list[Bar]:
        """The bars starting in ``[start_ms, end_ms)``, oldest first, the last row of a start winning."""
        by_start = {b.t: b for b in self.bars if start_ms <= b.t < end_ms}
        return [by_start[t] for t in sorted(by_start)]


def windows(start_ms: int, end_ms: int, span_ms: int, most: int = MAX_PAGES) -> list[tuple[int, int]]:
    """``[start_ms, end_ms)`` cut into windows of at most ``span_ms``, oldest first; at most ``most`` of them,
    the newest (the chart's end matters most)."""
    out: list[tuple[int, int]] = []
    hi = end_ms
    while hi > start_ms and len(out) < most:
        lo = max(start_ms, hi - span_ms)
        out.append((lo, hi))
        hi = lo
    out.reverse()
    return out


def rfc3339(ms: int) -> str:
    """``2022-04-11T08:00:00Z`` (whole seconds, rounded down)."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def take_token(
    bucket: TokenBucket | None, max_wait: float = MAX_WAIT, clock: Callable[[], float] = time.monotonic
) -> None:
    """Wait for ``bucket``'s next token (the plan's rate, shared with the feed's other requests); when that
    is more than ``max_wait`` away, give it back and raise :class:`RateLimited` with that wait."""
    if bucket is None:
        return
    wait = bucket.reserve(clock())
    if wait > max_wait:
        bucket.tokens += 1.0  # not taken after all
        raise RateLimited(wait)
    if wait > 0:
        await asyncio.sleep(wait)


async def get_json(
    http: aiohttp.ClientSession,
    url: str,
    *,
    what: str,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    credentials: Sequence[str] = (),
    missing: Collection[int] = (),
    max_body: int = MAX_BODY,
) -> Any:
    """GET ``url`` and decode its JSON body (:func:`feeds.reference.get_body`, errors included); a status in
    ``missing`` (a provider's "no such symbol") returns None instead."""
    body = await reference.get_body(
        http,
        url,
        what=what,
        params=params,
        headers=headers,
        max_body=max_body,
        credentials=credentials,
        missing=missing,
    )
    return None if body is None else reference.decode(body, what)
