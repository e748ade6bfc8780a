"""Bar subscriptions in the protocol and the session: parsing, the checks of subscribe_bars, the cap, refresh."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ticker import protocol
from ticker.barhub import BarHub
from ticker.bars import Bar
from ticker.entitlements import Entitlements, Identity
from ticker.errors import ProtocolError, TooManyBarSubscriptions, UnknownSymbols
from ticker.hub import Hub
from ticker.session import ANY_SYMBOL, Access, BarRequest, Outcome, Session, query_bars


def parse(obj: dict[str, Any]) -> protocol.Command:
    return protocol.parse_client_message(orjson.dumps(obj))


# -- protocol ----------------------------------------------------------------------------------
def test_subscribe_bars_is_parsed_normalized_with_a_default_history():
    assert parse({"op": "subscribe_bars", "symbol": " aapl", "interval": "1m"}) == protocol.SubscribeBars(
        "AAPL", "1m", 500
    )
    assert parse({"op": "subscribe_bars", "symbol": "BTC-USD", "interval": "1s", "history": 0}) == (
        protocol.SubscribeBars("BTC-USD", "1s", 0)
    )
    assert parse({"op": "subscribe_bars", "symbol": "A", "interval": "1d", "history": 5000}) == (
        protocol.SubscribeBars("A", "1d", 5000)
    )
    assert parse({"op": "unsubscribe_bars", "symbol": "msft", "interval": "5m"}) == protocol.UnsubscribeBars(
        "MSFT", "5m"
    )


@pytest.mark.parametrize(
    ("msg", "code", "words"),
    [
        ({"op": "subscribe_bars", "interval": "1m"}, "bad_request", '"symbol"'),
        ({"op": "subscribe_bars", "symbol": ["AAPL"], "interval": "1m"}, "bad_request", '"symbol"'),
        ({"op": "subscribe_bars", "symbol": "bad$", "interval": "1m"}, "invalid_symbol", "bad$"),
        ({"op": "subscribe_bars", "symbol": "AAPL"}, "bad_request", '"interval"'),
        (
            {"op": "subscribe_bars", "symbol": "AAPL", "interval": "1M"},
            "bad_request",
            "invalid interval '1M'",
        ),
        ({"op": "unsubscribe_bars", "symbol": "AAPL", "interval": 60}, "bad_request", "invalid interval"),
        (
            {"op": "subscribe_bars", "symbol": "AAPL", "interval": "1m", "history": -1},
            "bad_request",
            "0 to 5000",
        ),
        (
            {"op": "subscribe_bars", "symbol": "AAPL", "interval": "1m", "history": 5001},
            "bad_request",
            "0 to 5000",
        ),
        (
            {"op": "subscribe_bars", "symbol": "AAPL", "interval": "1m", "history": 2.5},
            "bad_request",
            "0 to 5000",
        ),
        (
            {"op": "subscribe_bars", "symbol": "AAPL", "interval": "1m", "history": True},
            "bad_request",
            "0 to 5000",
        ),
    ],
)
def test_bad_bar_requests_are_refused_with_a_clear_message(msg: dict[str, Any], code: str, words: str):
    with pytest.raises(ProtocolError) as exc:
        parse(msg)
    assert exc.value.code == code and words in exc.value.message


def test_the_unknown_op_message_lists_the_bar_ops():
    with pytest.raises(ProtocolError) as exc:
        parse({"op": "bars"})
    assert exc.value.code == "unknown_op" and "subscribe_bars, unsubscribe_bars" in exc.value.message


def test_bar_messages():
    bar = Bar(60_000, 1.0, 2.0, 0.5, 1.5, 10)
    assert orjson.loads(protocol.bar("AAPL", "1m", bar)) == {
        "type": "bar",
        "s": "AAPL",
        "interval": "1m",
        "bar": {"t": 60_000, "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 10},
    }
    assert orjson.loads(protocol.bars("AAPL", "1m", [bar], delayed=True)) == {
        "type": "bars",
        "s": "AAPL",
        "interval": "1m",
        "delayed": True,
        "data": [{"t": 60_000, "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 10}],
    }
    assert (
        protocol.bars_unsubscribed("AAPL", "1m") == b'{"type":"bars_unsubscribed","s":"AAPL","interval":"1m"}'
    )


def test_query_bars_of_sse():
    assert query_bars("aapl:1m, BINANCE:BTCUSDT:5m,AAPL:1m,", 10) == [
        ("AAPL", "1m"),
        ("BINANCE:BTCUSDT", "5m"),
    ]
    assert query_bars("", 10) == []
    with pytest.raises(ProtocolError, match="SYMBOL:INTERVAL"):
        query_bars("AAPL", 10)
    with pytest.raises(ProtocolError, match="invalid interval"):
        query_bars("AAPL:2m", 10)
    with pytest.raises(ProtocolError) as bad:
        query_bars("b$d:1m", 10)
    assert bad.value.code == "invalid_symbol"
    with pytest.raises(TooManyBarSubscriptions) as many:
        query_bars("A:1m,B:1m,C:1m", 2)
    assert (
        many.value.code == "too_many_bar_subscriptions" and "limit is 2 per connection" in many.value.message
    )


# -- the session ---------------------------------------------------------------------------------
class Book:
    """Knows AAPL and MSFT only."""

    def unknown(self, symbols: Any, allow: Any = None) -> UnknownSymbols | None:
        bad = [s for s in symbols if s not in ("AAPL", "MSFT")]
        return UnknownSymbols(bad, {s: [("AAPL", "Apple Inc.")] for s in bad}) if bad else None

    def statuses(self, symbols: Any, remember: bool = True) -> list[dict[str, str]]:
        return []


def make(
    identity: Identity | None = None, cap: int = 10, book: Any = ANY_SYMBOL
) -> tuple[BarHub[str], Session[str], list[frozenset[str]]]:
    told: list[frozenset[str]] = []
    bars: BarHub[str] = BarHub(cap, 900.0, told.append)
    hub: Hub[str] = Hub()
    hub.add("c")
    access = Access(required=identity is not None)
    return bars, Session(hub, "c", 1000.0, 1000, 0.0, access, identity, book, bars), told


def msgs(out: Outcome) -> list[dict[str, Any]]:
    return [orjson.loads(r) for r in out.replies]


def sub_bars(s: Session[str], symbol: str, interval: str = "1m", **extra: Any) -> Outcome:
    msg = {"op": "subscribe_bars", "symbol": symbol, "interval": interval, **extra}
    return s.receive(orjson.dumps(msg).decode(), 0.0)


def test_subscribe_bars_holds_it_demands_its_symbol_and_asks_the_transport_for_history():
    bars, s, told = make()
    out = sub_bars(s, "aapl", history=20)
    assert out.replies == [] and out.errors == []
    assert out.bars == [BarRequest("AAPL", "1m", "AAPL", 20)]
    assert bars.demand() == {"AAPL"} and told == [frozenset({"AAPL"})]
    assert s.symbols == frozenset()  # no quote subscription
    assert not bars.active  # held, not live until the transport sent its history
    assert bars.start("c", "AAPL", "1m", "AAPL")
    assert bars.members == {("AAPL", "1m"): {"c": None}}
    again = sub_bars(s, "AAPL")  # a repeated subscribe: its history again, updates after it
    assert again.bars == [BarRequest("AAPL", "1m", "AAPL", 500)] and not bars.active
    out = s.receive('{"op":"unsubscribe_bars","symbol":"aapl","interval":"1m"}', 0.0)
    assert msgs(out) == [{"type": "bars_unsubscribed", "s": "AAPL", "interval": "1m"}]
    assert bars.demand() == frozenset() and told[-1] == frozenset()
    assert not bars.start("c", "AAPL", "1m", "AAPL")  # history that arrives after the unsubscribe is void


def test_the_cap_counts_symbol_and_interval_pairs():
    bars, s, _ = make(cap=2)
    sub_bars(s, "AAPL", "1m")
    sub_bars(s, "AAPL", "5m")
    assert sub_bars(s, "AAPL", "1m").errors == []  # held already: not one more
    out = sub_bars(s, "MSFT", "1m")
    assert msgs(out) == [
        {
            "type": "error",
            "code": "too_many_bar_subscriptions",
            "message": "3 bar subscriptions wanted; the limit is 2 per connection",
            "symbols": ["MSFT"],
        }
    ]
    assert out.bars == [] and set(bars.holds("c")) == {("AAPL", "1m"), ("AAPL", "5m")}


def test_an_unknown_symbol_is_refused_with_suggestions_and_never_demanded():
    bars, s, told = make(book=Book())
    out = sub_bars(s, "APPL")
    [err] = msgs(out)
    assert (
        err["code"] == "unknown_symbol"
        and err["symbols"] == ["APPL"]
        and err["suggestions"] == {"APPL": ["AAPL"]}
    )
    assert out.bars == [] and bars.demand() == frozenset() and told == []


def test_the_cap_is_checked_before_the_directory():
    _bars, s, _ = make(cap=1, book=Book())
    sub_bars(s, "AAPL")
    assert sub_bars(s, "APPL").errors == ["too_many_bar_subscriptions"]


ENTS = Entitlements(realtime=("AAPL",), delayed=("MSFT",))


def test_entitlements_forbid_and_delay_bars():
    bars, s, _ = make(Identity("ann", 2000.0, ENTS))
    out = sub_bars(s, "NVDA")
    assert [m["code"] for m in msgs(out)] == ["forbidden_symbol"] and out.auth_failures == [
        "forbidden_symbol"
    ]
    assert out.bars == [] and bars.demand() == frozenset()
    assert sub_bars(s, "MSFT").bars == [BarRequest("MSFT", "1m", "~MSFT", 500)]
    assert sub_bars(s, "AAPL").bars == [BarRequest("AAPL", "1m", "AAPL", 500)]
    assert bars.demand() == {"AAPL", "MSFT"}  # a delayed subscription demands the symbol itself


def test_before_auth_subscribe_bars_is_unauthorized():
    bars, s, _ = make()
    s.access = Access(required=True)
    s.identity = None
    out = sub_bars(s, "AAPL")
    assert out.errors == ["unauthorized"] and out.bars == [] and bars.holds("c") == {}


def test_a_refresh_drops_forbidden_bar_subscriptions_and_moves_tiers():
    bars, s, _ = make(Identity("ann", 2000.0, ENTS))
    for sym in ("AAPL", "MSFT"):
        for req in sub_bars(s, sym).bars:
            bars.start("c", req.symbol, req.interval, req.key)
    s.receive('{"op":"subscribe","symbols":["AAPL"]}', 0.0)
    narrowed = Entitlements(realtime=("MSFT",), delayed=())
    out = s.authorize(Identity("ann", 3000.0, narrowed))
    replies = msgs(out)
    assert replies[0]["type"] == "authenticated"
    assert {"type": "bars_unsubscribed", "s": "AAPL", "interval": "1m"} in replies
    forbidden = [m for m in replies if m.get("code") == "forbidden_symbol"]
    assert len(forbidden) == 1 and forbidden[0]["symbols"] == ["AAPL"]  # one error for quotes and bars
    assert out.bars == [BarRequest("MSFT", "1m", "MSFT", 500)]  # delayed -> real-time: history again
    assert set(bars.holds("c")) == {("MSFT", "1m")} and bars.holds("c")["MSFT", "1m"].key == "MSFT"
    assert bars.members == {}  # the moved one is live again once its new history is sent
    assert not bars.start("c", "MSFT", "1m", "~MSFT") and bars.start("c", "MSFT", "1m", "MSFT")


def test_a_refresh_forbidding_only_bars_still_names_them():
    bars, s, _ = make(Identity("ann", 2000.0, ENTS))
    sub_bars(s, "AAPL")
    out = s.authorize(Identity("ann", 3000.0, Entitlements(realtime=("MSFT",), delayed=())))
    assert [m.get("code") for m in msgs(out)] == [None, None, "forbidden_symbol"]
    assert bars.holds("c") == {} and bars.demand() == frozenset()


def test_a_symbol_dropped_after_the_fact_ends_its_bar_subscriptions_too():
    bars, s, told = make()
    sub_bars(s, "NOPE")
    sub_bars(s, "NOPE", "5m")
    sub_bars(s, "AAPL")
    out = s.drop(["NOPE"], UnknownSymbols(["NOPE"]))
    assert [(m["type"], m.get("interval")) for m in msgs(out)] == [
        ("bars_unsubscribed", "1m"),
        ("bars_unsubscribed", "5m"),
        ("error", None),
    ]  # no `subscribed`: the quote subscription did not hold it
    assert msgs(out)[-1]["code"] == "unknown_symbol" and msgs(out)[-1]["symbols"] == ["NOPE"]
    assert sorted(bars.holds("c")) == [("AAPL", "1m")] and told[-1] == frozenset({"AAPL"})
