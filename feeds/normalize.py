"""Merging partial provider updates into full normalized quotes (pure, no I/O).

Providers send trades (last price, size), quotes (bid, ask) and summaries (day volume,
previous close, change, the day's open, high and low) as separate messages. :class:`QuoteBook`
keeps the latest known fields per symbol so every emitted :class:`~ticker.quote.Quote` carries
all of them: trades update last price and volume (and push the day's high or low a summary gave
when they pass it), quotes update bid and ask, the rest is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from ticker.quote import Quote


@dataclass(slots=True)
class _State:
    price: float | None = None
    bid: float | None = None
    ask: float | None = None
    volume: float | None = None
    prev_close: float | None = None
    change: float | None = None
    change_percent: float | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    vwap: float | None = None


class QuoteBook:
    """Latest known fields per symbol; :meth:`update` merges a partial update and returns the full quote."""

    def __init__(self) -> None:
        self._states: dict[str, _State] = {}

    def forget(self, symbol: str) -> None:
        """Drop what is known of ``symbol`` (after it is unsubscribed upstream)."""
        self._states.pop(symbol, None)

    def update(
        self,
        symbol: str,
        ts_ms: int,
        *,
        price: float | None = None,
        bid: float | None = None,
        ask: float | None = None,
        volume: float | None = None,
        size: float | None = None,
        prev_close: float | None = None,
        change: float | None = None,
        change_percent: float | None = None,
        open: float | None = None,
        high: float | None = None,
        low: float | None = None,
        vwap: float | None = None,
    ) -> Quote | None:
        """Merge one update for ``symbol`` and return the resulting quote.

        ``volume`` is a provider's cumulative (day) volume and replaces the known one;
        ``size`` is one trade's size and is added to it. ``change`` and ``change_percent``
        from the provider win; otherwise they are derived from ``prev_close``. ``open``, ``high``,
        ``low`` and ``vwap`` are the provider's day statistics (left out: the server works them
        out); a later trade above the high or below the low moves it. Returns ``None`` while
        neither a trade price nor a bid/ask pair is known yet.
        """
        st = self._states.get(symbol)
        if st is None:
            st = self._states[symbol] = _State()
        if price is not None:
            st.price = price
            # A provider-sent change describes an older price; derive from prev_close from now on.
            st.change = st.change_percent = None
        if bid is not None:
            st.bid = bid
        if ask is not None:
            st.ask = ask
        if volume is not None:
            st.volume = volume
        elif size is not None:
            st.volume = (st.volume or 0.0) + size
        if prev_close is not None:
            st.prev_close = prev_close
        if change is not None:
            st.change = change
        if change_percent is not None:
            st.change_percent = change_percent
        if open is not None:
            st.open = open
        if high is not None:
            st.high = high
        if low is not None:
            st.low = low
        if vwap is not None:
            st.vwap = vwap
        if price is not None:
            if st.high is not None and price > st.high:
                st.high = price
            if st.low is not None and price < st.low:
                st.low = price
        last = st.price
        if last is None:
            if st.bid is None or st.ask is None:
                return None
            last = round((st.bid + st.ask) / 2, 8)
        return Quote(
            symbol=symbol,
            price=last,
            ts_ms=ts_ms,
            bid=st.bid,
            ask=st.ask,
            volume=st.volume,
            change=st.change,
            change_percent=st.change_percent,
            prev_close=st.prev_close,
            open=st.open,
            high=st.high,
            low=st.low,
            vwap=st.vwap,
        )
