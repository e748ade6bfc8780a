"""The session with ``--auth jwt``: admission, entitlements per symbol, refresh, expiry and user caps."""

from __future__ import annotations

import math
from typing import Any

import orjson

from ticker.entitlements import EVERYTHING, Entitlements, Identity, UserSlots
from ticker.errors import AUTH_FAILED, TOKEN_EXPIRED, USER_LIMIT, TokenRejected
from ticker.hub import Hub
from ticker.protocol import Auth
from ticker.quote import Quote
from ticker.session import Access, Outcome, Session

AAPL_RT_REST_DELAYED = Entitlements(realtime=("AAPL",), delayed=("*",))


def who(ents: Entitlements = EVERYTHING, sub: str = "ann", exp: float = 2000.0) -> Identity:
    return Identity(sub, exp, ents)


def make(
    identity: Identity | None = None, slots: UserSlots | None = None, max_symbols: int = 500
) -> tuple[Hub[str], Session[str], Access]:
    hub: Hub[str] = Hub(max_symbols=max_symbols)
    hub.add("c")
    access = Access(required=True, slots=slots or UserSlots(), auth_timeout=10.0)
    return hub, Session(hub, "c", 1000.0, 1000, 0.0, access, identity), access


def msgs(out: Outcome) -> list[dict[str, Any]]:
    return [orjson.loads(r) for r in out.replies]


def login(s: Session[str], identity: Identity, message: str = '{"op":"auth","token":"t"}') -> Outcome:
    out = s.receive(message, 0.0)
    assert out.verify == Auth("t", refresh='"refresh"' in message) and out.replies == []
    return s.authorize(identity)


def test_before_auth_only_auth_and_ping_are_served():
    hub, s, _ = make()
    out = s.receive('{"op":"subscribe","symbols":["AAPL"]}', 0.0)
    assert [m["code"] for m in msgs(out)] == ["unauthorized"] and out.auth_failures == ["missing"]
    assert out.close is None and hub.symbols_of("c") == frozenset()
    assert msgs(s.receive('{"op":"ping","id":1}', 0.0)) == [{"type": "pong", "id": 1}]
    assert [m["code"] for m in msgs(s.receive('{"op":"refresh","token":"t"}', 0.0))] == ["unauthorized"]
    assert [m["code"] for m in msgs(s.open("AAPL"))] == ["unauthorized"]


def test_auth_answers_authenticated_then_subscribe_works():
    hub, s, _ = make()
    assert msgs(login(s, who(exp=1999.5))) == [{"type": "authenticated", "sub": "ann", "exp": 1999}]
    s.receive('{"op":"subscribe","symbols":["AAPL"]}', 0.0)
    assert hub.symbols_of("c") == {"AAPL"}


def test_a_bad_token_in_auth_closes_4001_and_a_bad_refresh_keeps_the_token_in_force():
    _hub, s, _ = make()
    s.receive('{"op":"auth","token":"t"}', 0.0)
    out = s.reject(TokenRejected("expired", "token expired"))
    assert out.close == AUTH_FAILED and out.close.code == 4001 and out.auth_failures == ["expired"]
    assert s.receive('{"op":"ping"}', 0.0).replies == []  # closed: input ignored

    _hub, s, _ = make()
    login(s, who())
    s.receive('{"op":"refresh","token":"t"}', 0.0)
    out = s.reject(TokenRejected("invalid", "bad signature"))
    assert out.close is None and [m["code"] for m in msgs(out)] == ["unauthorized"]
    assert s.identity == who()


def test_auth_timeout_closes_4001_and_exp_closes_4003():
    _hub, s, _ = make()
    assert s.expired(9.9, 0.0) is None
    assert s.expired(10.0, 0.0) == AUTH_FAILED
    _hub, s, _ = make(identity=who(exp=100.0))
    s.open("")
    assert s.expired(50.0, 99.9) is None
    assert s.expired(50.0, 100.0) == TOKEN_EXPIRED and TOKEN_EXPIRED.code == 4003


def test_forbidden_symbols_are_refused_and_the_allowed_ones_applied_delayed_ones_named():
    hub, s, _ = make(identity=who(Entitlements(realtime=("AAPL",), delayed=("BINANCE:*",))))
    s.open("")
    out = s.receive('{"op":"subscribe","symbols":["AAPL","BINANCE:BTCUSDT","MSFT"]}', 0.0)
    first, second, told = msgs(out)
    assert first == {
        "type": "error",
        "code": "forbidden_symbol",
        "message": "not entitled to MSFT",
        "symbols": ["MSFT"],
    }
    assert told == {"type": "snapshot", "e": hub.epoch, "data": []}  # no values yet: the epoch only
    assert second == {
        "type": "subscribed",
        "symbols": ["AAPL", "BINANCE:BTCUSDT"],
        "delayed": ["BINANCE:BTCUSDT"],
        "rates": {},
    }
    assert out.auth_failures == ["forbidden_symbol"] and s.delayed == 1
    assert hub.symbols_of("c") == {"AAPL", "~BINANCE:BTCUSDT"}
    assert s.symbols == {"AAPL", "BINANCE:BTCUSDT"}


def test_the_cap_counts_every_well_formed_symbol_and_the_token_lowers_it():
    hub, s, _ = make(identity=who(Entitlements(realtime=("A*",), max_symbols=2)), max_symbols=3)
    s.open("")
    out = s.receive('{"op":"subscribe","symbols":["AA","AB","ZZ"]}', 0.0)
    assert [m["code"] for m in msgs(out)] == ["too_many_symbols"] and hub.symbols_of("c") == frozenset()
    assert "limit is 2 per connection" in msgs(out)[0]["message"]


def test_a_delayed_snapshot_is_the_delayed_keys_value_with_the_original_seq():
    hub, s, _ = make(identity=who(AAPL_RT_REST_DELAYED))
    s.open("")
    hub.publish(Quote("MSFT", 400.0, 1_000), 0.0)
    seq = hub.state("MSFT").seq  # type: ignore[union-attr]
    [held] = hub.last_encoded(["MSFT"])  # what the delay line keeps of it
    hub.publish(Quote("MSFT", 401.0, 2_000), 0.0)
    hub.publish_delayed("MSFT", held, seq, 0.0)
    out = s.receive('{"op":"subscribe","symbols":["MSFT"]}', 0.0)
    snap = msgs(out)[1]
    assert snap["type"] == "snapshot" and snap["data"] == [{"s": "MSFT", "p": 400.0, "t": 1000, "q": seq}]


def test_refresh_needs_the_same_sub_and_narrowing_drops_and_moves_symbols():
    hub, s, _ = make()
    login(s, who())
    s.receive('{"op":"subscribe","symbols":["AAPL","MSFT","KO"]}', 0.0)
    out = login(s, who(sub="bob"), '{"op":"refresh","token":"t"}')
    assert [m["code"] for m in msgs(out)] == ["unauthorized"] and s.identity == who()

    narrowed = who(Entitlements(realtime=("AAPL",), delayed=("MSFT",)), exp=3000.0)
    out = login(s, narrowed, '{"op":"refresh","token":"t"}')
    kinds = [m["type"] for m in msgs(out)]
    assert kinds == ["authenticated", "subscribed", "error"]
    assert msgs(out)[1] == {
        "type": "subscribed",
        "symbols": ["AAPL", "MSFT"],
        "delayed": ["MSFT"],
        "rates": {},
    }
    assert msgs(out)[2]["code"] == "forbidden_symbol" and msgs(out)[2]["symbols"] == ["KO"]
    assert set(out.unsubscribed) == {"KO", "MSFT"}
    assert hub.symbols_of("c") == {"AAPL", "~MSFT"}


def test_unsubscribe_drops_either_tier():
    hub, s, _ = make(identity=who(AAPL_RT_REST_DELAYED))
    s.open("AAPL,MSFT")
    out = s.receive('{"op":"unsubscribe","symbols":["MSFT"]}', 0.0)
    assert msgs(out) == [{"type": "subscribed", "symbols": ["AAPL"], "delayed": [], "rates": {}}]
    assert hub.symbols_of("c") == {"AAPL"} and s.delayed == 0


def test_user_cap_refuses_the_connection_past_it_and_release_gives_the_slot_back():
    slots = UserSlots(default_cap=1)
    _hub, first, _ = make(identity=who(), slots=slots)
    assert first.open("").close is None and slots.held("ann") == 1
    _hub, second, _ = make(slots=slots)
    second.receive('{"op":"auth","token":"t"}', 0.0)
    out = second.authorize(who())
    assert out.close == USER_LIMIT and out.close.code == 4029 and out.auth_failures == ["user_limit"]
    second.release()
    assert slots.held("ann") == 1  # the refused one held nothing
    first.release()
    first.release()
    assert slots.held("ann") == 0
    own_cap = who(Entitlements(max_connections=2))
    assert slots.take(own_cap) and slots.take(own_cap) and not slots.take(own_cap)


def test_without_required_auth_every_connection_is_anonymous_and_auth_is_refused():
    hub: Hub[str] = Hub()
    hub.add("c")
    s = Session(hub, "c", 1000.0, 1000, 0.0)
    assert s.identity is not None and s.identity.exp == math.inf
    out = s.receive('{"op":"auth","token":"t"}', 0.0)
    assert out.verify is None and [m["code"] for m in msgs(out)] == ["bad_request"]
    assert s.expired(1e9, 1e12) is None


def test_entitlement_patterns():
    e = Entitlements.from_claim({"realtime": ["BINANCE:*", "aapl"], "delayed": ["*"], "max_symbols": 5})
    assert [e.tier(s).value for s in ("AAPL", "BINANCE:ETHUSDT", "AAPLX", "MSFT")] == [
        "realtime",
        "realtime",
        "delayed",
        "delayed",
    ]
    assert Entitlements.from_claim(None).tier("X").value == "realtime"
    assert Entitlements.from_claim({}).tier("X").value == "forbidden"
    assert Entitlements.from_claim({"realtime": ["A.B"]}).tier("AXB").value == "forbidden"  # . is literal
    bad: object
    for bad in ([], {"realtime": "AAPL"}, {"realtime": [1]}, {"max_symbols": -1}, {"max_connections": 1.5}):
        try:
            Entitlements.from_claim(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_a_refresh_that_lowers_max_symbols_drops_the_last_symbols_in_sort_order():
    hub, s, _ = make()
    login(s, who())
    s.receive('{"op":"subscribe","symbols":["KO","AAPL","MSFT","NVDA"]}', 0.0)
    out = login(s, who(Entitlements(max_symbols=2)), '{"op":"refresh","token":"t"}')
    replies = msgs(out)
    assert [m["type"] for m in replies] == ["authenticated", "subscribed", "error"]
    assert replies[1]["symbols"] == ["AAPL", "KO"]
    assert replies[2]["code"] == "too_many_symbols" and replies[2]["symbols"] == ["MSFT", "NVDA"]
    assert hub.symbols_of("c") == {"AAPL", "KO"} and set(out.unsubscribed) == {"MSFT", "NVDA"}


def test_claims_that_could_stall_or_mean_nothing_are_refused():
    for bad in (
        {"realtime": ["*A*B*C*D"]},  # more than three * could backtrack for seconds
        {"max_symbols": 0},
        {"max_hz": 0.01},
        {"max_connections": 1e12},
    ):
        try:
            Entitlements.from_claim(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")
    assert Entitlements.from_claim({"realtime": ["*A*B*"], "max_connections": 0}).max_connections == 0
