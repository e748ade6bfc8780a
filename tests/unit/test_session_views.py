"""The session's side of views: rates asked and capped, re-rating, options, and token refreshes with views."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ticker.entitlements import EVERYTHING, Entitlements, Identity, UserSlots
from ticker.errors import ProtocolError
from ticker.hub import Hub
from ticker.quote import Quote
from ticker.session import Access, Outcome, Session, query_view
from ticker.views import ViewSpec, is_view_key


def msgs(out: Outcome) -> list[dict[str, Any]]:
    return [orjson.loads(r) for r in out.replies]


def make(ents: Entitlements = EVERYTHING) -> tuple[Hub[str], Session[str]]:
    hub: Hub[str] = Hub()
    hub.add("c")
    access = Access(required=True, slots=UserSlots(), max_hz=50.0)
    return hub, Session(hub, "c", 1000.0, 1000, 0.0, access, Identity("ann", 2000.0, ents))


def test_max_hz_is_granted_per_symbol_lowered_to_one_per_flush_and_reported_in_rates() -> None:
    hub, s = make()
    out = s.receive('{"op":"subscribe","symbols":["AAPL","MSFT"],"max_hz":3}', 1.0)
    assert msgs(out)[0]["rates"] == {"AAPL": 3.0, "MSFT": 3.0}
    out = s.receive('{"op":"subscribe","symbols":["NVDA"],"max_hz":1000}', 1.0)
    assert msgs(out)[0]["rates"]["NVDA"] == 50.0
    out = s.receive('{"op":"subscribe","symbols":["AAPL"]}', 1.0)  # again without max_hz: unthrottled
    first = msgs(out)[0]
    assert "AAPL" not in first["rates"] and first["symbols"] == ["AAPL", "MSFT", "NVDA"]
    assert "AAPL" in hub.symbols_of("c") and hub.throttled_count() == 2
    for bad in ('"max_hz":0.05', '"max_hz":true', '"max_hz":"2"', '"max_hz":null'):
        out = s.receive('{"op":"subscribe","symbols":["KO"],' + bad + "}", 1.0)
        assert [m["code"] for m in msgs(out)] == ["bad_request"] and "KO" not in s.symbols


def test_re_rating_a_symbol_moves_it_in_one_step_and_sends_its_snapshot() -> None:
    seen: list[frozenset[str]] = []
    hub: Hub[str] = Hub(on_demand=seen.append)
    hub.add("c")
    s = Session(hub, "c", 1000.0, 1000, 0.0)
    s.receive('{"op":"subscribe","symbols":["AAPL"]}', 0.0)
    hub.publish(Quote("AAPL", 1.0, 1), 0.0)
    seen.clear()
    out = s.receive('{"op":"subscribe","symbols":["AAPL"],"max_hz":2}', 1.0)
    kinds = [m["type"] for m in msgs(out)]
    assert kinds == ["subscribed", "snapshot"] and out.unsubscribed == ["AAPL"]
    assert all(any(k.startswith("AAPL") for k in d) for d in seen)  # never out of demand
    out = s.receive('{"op":"unsubscribe","symbols":["AAPL"]}', 1.0)
    assert out.unsubscribed == [ViewSpec(500_000).key("AAPL")] and s.asked == {}
    assert hub.throttled_count() == 0 and hub.state(ViewSpec(500_000).key("AAPL")) is None


def test_options_move_every_symbol_and_answer_then_snapshot_full_entries() -> None:
    hub, s = make()
    s.receive('{"op":"subscribe","symbols":["AAPL","MSFT"],"max_hz":2}', 0.0)
    hub.publish(Quote("AAPL", 1.0, 1, bid=0.5, ask=1.5), 0.0)
    out = s.receive('{"op":"options","fields":["b","p"],"delta":true}', 1.0)
    m = msgs(out)
    assert m[0] == {"type": "options", "fields": ["p", "b"], "delta": True}
    assert m[1]["type"] == "snapshot" and m[1]["data"] == [{"s": "AAPL", "p": 1.0, "b": 0.5, "t": 1, "q": 1}]
    assert hub.symbols_of("c") == {ViewSpec(500_000, ("p", "b"), True).key(x) for x in ("AAPL", "MSFT")}
    out = s.receive('{"op":"options","fields":null,"delta":false}', 1.0)
    assert msgs(out)[0] == {"type": "options", "fields": None, "delta": False}
    assert hub.symbols_of("c") == {ViewSpec(500_000).key(x) for x in ("AAPL", "MSFT")}
    out = s.receive('{"op":"options","fields":["x","p","zz"]}', 1.0)
    assert msgs(out)[0]["code"] == "bad_request" and "x, zz" in msgs(out)[0]["message"]
    assert [
        msgs(s.receive(m, 1.0))[0]["code"] for m in ('{"op":"options"}', '{"op":"options","fields":[]}')
    ] == [
        "bad_request",
        "bad_request",
    ]


def test_a_refreshed_cap_moves_symbols_to_capped_views_that_wait_their_interval() -> None:
    hub, s = make()
    s.receive('{"op":"subscribe","symbols":["AAPL"]}', 0.0)
    hub.publish(Quote("AAPL", 1.0, 1), 0.0)
    s.receive('{"op":"refresh","token":"t"}', 10.0)
    out = s.authorize(Identity("ann", 3000.0, Entitlements(max_hz=1.0)), 10.0)
    assert msgs(out)[1]["rates"] == {"AAPL": 1.0}
    key = ViewSpec(1_000_000).key("AAPL")
    assert hub.symbols_of("c") == {key}
    view = hub.state(key)
    assert view is not None and getattr(view, "next_at", None) == 11.0  # its snapshot counts as an entry


def test_a_tier_move_keeps_the_view_options() -> None:
    hub, s = make()
    s.receive('{"op":"subscribe","symbols":["AAPL"],"max_hz":2}', 0.0)
    s.receive('{"op":"options","delta":true}', 0.0)
    s.receive('{"op":"refresh","token":"t"}', 1.0)
    out = s.authorize(Identity("ann", 3000.0, Entitlements(realtime=(), delayed=("*",))), 1.0)
    assert msgs(out)[1]["delayed"] == ["AAPL"] and msgs(out)[1]["rates"] == {"AAPL": 2.0}
    (key,) = hub.symbols_of("c")
    assert key == ViewSpec(500_000, None, True).key("~AAPL") and is_view_key(key)


@pytest.mark.parametrize(
    "bad", [("0", None, None), ("x", None, None), (None, "p,nope", None), (None, None, "maybe")]
)
def test_query_options_are_parsed_like_the_messages(bad: tuple[str | None, str | None, str | None]) -> None:
    assert query_view("2", "b,p", "1") == (2.0, ViewSpec(0, ("p", "b"), True))
    assert query_view(None, None, None) == (None, ViewSpec())
    with pytest.raises(ProtocolError) as err:
        query_view(*bad)
    assert err.value.code == "bad_request"
