"""Property tests (Hypothesis) of the session and the hub: any sequence of client messages, on several
connections sharing one hub, gives replies the protocol's schemas accept, documented closes only, and a
hub whose demand is the union of everyone's subscriptions.

A state machine opens connections (with or without ``--auth jwt``, a small ``--max-symbols`` and bar cap,
a tight or loose rate limit, a directory that knows only some symbols), sends them any messages (bytes,
text, JSON values, requests of every op with arbitrary fields), answers their tokens, publishes quotes,
drops symbols and closes connections, checking every outcome and the shared state after each step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jsonschema
import orjson
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.support.schemas import protocol_schemas
from ticker.barhub import BarHub
from ticker.bars import INTERVALS, MAX_LIMIT
from ticker.delay import delayed_key, is_delayed_key, symbol_of
from ticker.entitlements import Entitlements, Identity, UserSlots
from ticker.errors import (
    AUTH_FAILED,
    CLIENT,
    ERROR_CODES,
    FLOOD,
    PING_TIMEOUT,
    SHUTDOWN,
    SLOW_CONSUMER,
    TOKEN_EXPIRED,
    USER_LIMIT,
    AuthReason,
    TokenRejected,
    TooManySymbols,
    UnknownSymbols,
)
from ticker.hub import Hub
from ticker.quote import Quote
from ticker.session import Access, AnySymbol, Outcome, Session
from ticker.symbols import SYMBOL_RE

_, SERVER_SCHEMA = protocol_schemas()
SERVER = jsonschema.Draft202012Validator(SERVER_SCHEMA)
#: The close decisions a session may take (docs/protocol.md, "Close codes"; errors.py).
CLOSES = {CLIENT, SHUTDOWN, FLOOD, SLOW_CONSUMER, PING_TIMEOUT, AUTH_FAILED, TOKEN_EXPIRED, USER_LIMIT}
AUTH_REASONS = {"missing", "invalid", "expired", "forbidden_symbol", "user_limit"}
KNOWN = ["AAPL", "MSFT", "BTC-USD", "PEND", "XOM"]
UNKNOWN_PREFIX = "Z"  # the directory of Book knows no symbol starting with it

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
symbols = (
    st.sampled_from([*KNOWN, "aapl", " msft ", "ZZZ", "ZEBRA", "\ufb01", "A" * 33, ""])
    | st.text(alphabet="ABZP-.$ \u00e9", max_size=6)
    | json_values
)
ops = st.sampled_from(
    ["subscribe", "unsubscribe", "subscribe_bars", "unsubscribe_bars", "ping", "auth", "refresh", "nope"]
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    msg: dict[str, Any] = {"op": draw(ops | json_values)}
    if draw(st.booleans()):
        msg["symbols"] = draw(st.lists(symbols, max_size=4) | json_values)
    if draw(st.booleans()):
        msg["symbol"] = draw(symbols)
    if draw(st.booleans()):
        msg["interval"] = draw(st.sampled_from(list(INTERVALS)) | json_values)
    if draw(st.booleans()):
        msg["history"] = draw(st.integers(-1, MAX_LIMIT + 1) | json_values)
    if draw(st.booleans()):
        msg["id"] = draw(json_values | st.text(min_size=250, max_size=300))
    if draw(st.booleans()):
        msg["token"] = draw(st.text(max_size=10) | json_values)
    return msg


known = st.sampled_from([*KNOWN, "ZZZ", "aapl"])
intervals = st.sampled_from(list(INTERVALS))
#: Well-formed requests of every op (the schema's shapes), so that the session's deeper paths are reached.
plausible = st.one_of(
    st.fixed_dictionaries(
        {"op": st.sampled_from(["subscribe", "unsubscribe"]), "symbols": st.lists(known, max_size=3)}
    ),
    st.fixed_dictionaries({"op": st.just("ping")}, optional={"id": json_values}),
    st.fixed_dictionaries({"op": st.sampled_from(["auth", "refresh"]), "token": st.just("a.b.c")}),
    st.fixed_dictionaries(
        {
            "op": st.sampled_from(["subscribe_bars", "unsubscribe_bars"]),
            "symbol": known,
            "interval": intervals,
        },
        optional={"history": st.integers(0, MAX_LIMIT)},
    ),
)
messages = (
    plausible.map(lambda m: orjson.dumps(m).decode())
    | plausible.map(lambda m: orjson.dumps(m).decode())
    | requests().map(lambda m: orjson.dumps(m).decode())
    | st.binary(max_size=32)
    | st.text(max_size=32)
    | json_values.map(lambda v: orjson.dumps(v).decode())
    | st.sampled_from(['{"op":"ping","id":' + "[" * 300 + "]" * 300 + "}", "[" * 1100, "\ud800"])
)
patterns = st.lists(st.sampled_from(["*", "A*", "MSFT", "BTC-*", "X*", "P*"]), max_size=2, unique=True)
identities = st.builds(
    lambda sub, exp, rt, dl, most, conns: Identity(
        sub, exp, Entitlements(tuple(rt), tuple(dl), max_symbols=most, max_connections=conns)
    ),
    st.sampled_from(["alice", "bob"]),
    st.floats(0, 4e9),
    patterns,
    patterns,
    st.none() | st.integers(1, 4),
    st.none() | st.integers(0, 2),
)


class Book:
    """A directory that knows every symbol but those starting with Z; those starting with P are pending."""

    def unknown(
        self, symbols: Sequence[str], allow: Callable[[str], bool] | None = None
    ) -> UnknownSymbols | None:
        bad = [s for s in symbols if s.startswith(UNKNOWN_PREFIX)]
        near = {s: [("AAPL", "Apple Inc.")] for s in bad if allow is None or allow("AAPL")}
        return UnknownSymbols(bad, near) if bad else None

    def statuses(self, symbols: Iterable[str], remember: bool = True) -> list[dict[str, str]]:
        return [
            {"s": s, "state": "pending", "reason": "waiting for the feed"} for s in symbols if s[0] == "P"
        ]


class Sessions(RuleBasedStateMachine):
    """Connections of one node: a hub, a bar hub and the sessions on them."""

    def __init__(self) -> None:
        super().__init__()
        self.demand: list[frozenset[str]] = []
        self.bar_demand: list[frozenset[str]] = []
        self.hub: Hub[int] = Hub(max_symbols=4, on_demand=self.demand.append)
        self.bar_hub: BarHub[int] = BarHub(2, 60.0, self.bar_demand.append)
        self.sessions: dict[int, Session[int]] = {}
        self.access = Access()
        self.book: Any = AnySymbol()
        self.now = 0.0
        self.wall = 1.7e9
        self.next_id = 0

    @initialize(
        max_symbols=st.integers(1, 6),
        bar_cap=st.integers(1, 3),
        required=st.booleans(),
        user_cap=st.integers(0, 2),
        directory=st.booleans(),
    )
    def configure(
        self, max_symbols: int, bar_cap: int, required: bool, user_cap: int, directory: bool
    ) -> None:
        self.hub.max_symbols = max_symbols
        self.bar_hub.max_per_connection = bar_cap
        self.access = Access(required=required, slots=UserSlots(user_cap))
        self.book = Book() if directory else AnySymbol()
        self.connect(1000.0, 1000, None, "")

    @rule(
        rate=st.sampled_from([1000.0, 2.0]),
        burst=st.sampled_from([1000, 2]),
        header=st.none() | identities,
        query=st.sampled_from(["", "aapl,MSFT", "ZZZ,AAPL", "bad$,,", "A,B,C,D,E,F,G"])
        | st.text(max_size=12),
    )
    def connect(self, rate: float, burst: int, header: Identity | None, query: str) -> None:
        conn = self.next_id
        self.next_id += 1
        self.hub.add(conn)
        session = Session(self.hub, conn, rate, burst, self.now, self.access, header, self.book, self.bar_hub)
        self.sessions[conn] = session
        self.check(session, session.open(query))

    @rule(
        data=st.data(),
        batch=st.lists(st.tuples(messages, st.sampled_from([0.0, 0.0, 0.01, 1.0])), max_size=6),
    )
    def receive(self, data: st.DataObject, batch: list[tuple[str | bytes, float]]) -> None:
        conn = data.draw(st.sampled_from(sorted(self.sessions)))
        session = self.sessions[conn]
        for message, dt in batch:
            self.now += dt
            out = session.receive(message, self.now)
            self.check(session, out)
            if out.verify is not None:  # the transport checks the token before the next input
                assert self.access.required
                if data.draw(st.booleans()):
                    self.check(session, session.authorize(data.draw(identities)))
                else:
                    reasons: list[AuthReason] = ["missing", "invalid", "expired"]
                    reason = data.draw(st.sampled_from(reasons))
                    self.check(session, session.reject(TokenRejected(reason, "bad token")))
            for req in out.bars:  # the transport sent the history: the subscription goes live
                self.bar_hub.start(conn, req.symbol, req.interval, req.key)

    @rule(data=st.data(), names=st.lists(st.sampled_from(KNOWN), min_size=1, max_size=2))
    def drop(self, data: st.DataObject, names: list[str]) -> None:
        session = self.sessions[data.draw(st.sampled_from(sorted(self.sessions)))]
        self.check(session, session.drop(names, UnknownSymbols(names)))

    @rule(data=st.data(), dt=st.floats(0, 20), wall=st.floats(0, 5e9))
    def tick(self, data: st.DataObject, dt: float, wall: float) -> None:
        self.now += dt
        session = self.sessions[data.draw(st.sampled_from(sorted(self.sessions)))]
        closed = session.expired(self.now, wall)
        assert closed is None or closed in (AUTH_FAILED, TOKEN_EXPIRED)

    @precondition(lambda self: len(self.sessions) > 1)  # one connection stays for the other rules
    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(sorted(self.sessions)))
        session = self.sessions.pop(conn)
        held = session.identity.sub if session.holds_slot and session.identity is not None else None
        before = self.access.slots.held(held) if held is not None else 0
        session.release()
        if held is not None:
            assert self.access.slots.held(held) == before - 1
        assert session.receive('{"op":"ping"}', self.now) == Outcome()
        self.hub.remove(conn)
        self.bar_hub.remove(conn)

    @rule(symbol=st.sampled_from(KNOWN), price=st.floats(0.01, 1e6), delayed=st.booleans())
    def publish(self, symbol: str, price: float, delayed: bool) -> None:
        self.hub.publish(Quote(symbol, price, 1_700_000_000_000, volume=1.0), self.now)
        if delayed:
            state = self.hub.state(symbol)
            assert state is not None and state.encoded is not None
            self.hub.publish_delayed(symbol, state.encoded, state.seq, self.now)
        for payload, members, _states in self.hub.flush().batches:
            assert members and SERVER.is_valid(orjson.loads(payload))

    # -- checks --------------------------------------------------------------------------------
    def check(self, session: Session[int], out: Outcome) -> None:
        """What every outcome promises (docs/protocol.md)."""
        replies = [orjson.loads(r) for r in out.replies]
        for msg in replies:
            assert SERVER.is_valid(msg), msg
            event(f"reply {msg['type']} {msg.get('code', '')}".strip())  # --hypothesis-show-statistics
        if out.close is not None:
            event(f"close {out.close.code}")
        assert [m["code"] for m in replies if m["type"] == "error"] == out.errors
        assert set(out.errors) <= set(ERROR_CODES)
        assert set(out.auth_failures) <= AUTH_REASONS
        assert out.close is None or out.close in CLOSES
        if out.close is not None:
            assert session.closed == out.close
        for msg in replies:
            if msg["type"] == "subscribed":
                assert set(msg["delayed"]) <= set(msg["symbols"])
        confirmed = [m for m in replies if m["type"] == "subscribed"]
        if confirmed:
            assert set(confirmed[-1]["symbols"]) == session.symbols
        for req in out.bars:
            assert SYMBOL_RE.match(req.symbol) and req.interval in INTERVALS
            assert req.key in (req.symbol, delayed_key(req.symbol)) and 0 <= req.history <= MAX_LIMIT
        assert out.verify is None or self.access.required
        if session.closed is not None:
            assert session.receive('{"op":"ping"}', self.now) == Outcome()

    @invariant()
    def demand_is_the_union_of_subscriptions(self) -> None:
        held = {conn: self.hub.symbols_of(conn) for conn in self.sessions}
        union = frozenset().union(*held.values())
        assert self.hub.demand() == union
        assert self.hub.subscription_count == sum(len(keys) for keys in held.values())
        assert (self.demand[-1] if self.demand else frozenset()) == union
        for conn, keys in held.items():
            session = self.sessions[conn]
            assert session.symbols == {symbol_of(k) for k in keys}
            assert len(keys) <= self.hub.max_symbols
            assert all(SYMBOL_RE.match(symbol_of(k)) for k in keys)
            assert session.delayed == sum(1 for k in keys if is_delayed_key(k))
        bars = {s for conn in self.sessions for s, _interval in self.bar_hub.holds(conn)}
        assert self.bar_hub.demand() == bars
        assert (self.bar_demand[-1] if self.bar_demand else frozenset()) == bars
        assert all(len(self.bar_hub.holds(conn)) <= self.bar_hub.max_per_connection for conn in self.sessions)


@given(
    config=st.tuples(
        st.integers(1, 6), st.integers(1, 3), st.booleans(), st.sampled_from([0, 2]), st.booleans()
    ),
    rate=st.sampled_from([(1000.0, 1000), (2.0, 2)]),
    header=st.none() | identities,
    batch=st.lists(st.tuples(messages, st.sampled_from([0.0, 0.0, 0.01, 1.0])), min_size=1, max_size=30),
    data=st.data(),
)
def test_any_messages_on_one_connection(
    config: tuple[int, int, bool, int, bool],
    rate: tuple[float, int],
    header: Identity | None,
    batch: list[tuple[str | bytes, float]],
    data: st.DataObject,
) -> None:
    """The machine's checks on one long conversation (Hypothesis makes stateful runs short at first)."""
    node = Sessions()
    node.configure(*config)
    node.connect(*rate, header, "")
    node.receive(data, batch)
    node.demand_is_the_union_of_subscriptions()


hub_ops = st.lists(
    st.tuples(
        st.sampled_from(["subscribe", "unsubscribe", "remove", "publish"]),
        st.integers(0, 3),
        st.lists(st.sampled_from(["A", "B", "C", "D", "~A", "~B"]), max_size=4),
    ),
    max_size=40,
)


@given(st.integers(1, 4), st.integers(0, 2), hub_ops)
def test_hub_demand_is_the_union_of_subscriptions(
    max_symbols: int, max_idle: int, ops: list[tuple[str, int, list[str]]]
) -> None:
    told: list[frozenset[str]] = []
    hub: Hub[int] = Hub(max_symbols=max_symbols, on_demand=told.append, max_idle_symbols=max_idle)
    model: dict[int, set[str]] = {}
    for op, sub, keys in ops:
        if op == "subscribe":
            hub.add(sub)
            wanted = model.get(sub, set()) | set(keys)
            try:
                hub.subscribe(sub, keys)
            except TooManySymbols:
                assert len(wanted) > max_symbols  # nothing of it was subscribed
            else:
                model[sub] = wanted
        elif op == "unsubscribe":
            gone = hub.unsubscribe(sub, keys)
            assert set(gone) == model.get(sub, set()) & set(keys)
            model[sub] = model.get(sub, set()) - set(keys)
        elif op == "remove":
            hub.remove(sub)
            model.pop(sub, None)
        else:
            for key in keys:
                if not is_delayed_key(key):
                    hub.publish(Quote(key, 1.0, 1), 0.0)
        union = frozenset().union(*model.values())
        assert hub.demand() == union and hub.demand_count == len(union)
        assert (told[-1] if told else frozenset()) == union
        assert hub.subscription_count == sum(len(v) for v in model.values())
        for sub_, held in model.items():
            assert hub.symbols_of(sub_) == held
        for key in union:
            assert set(hub.members(key)) == {s for s, held in model.items() if key in held}
    for payload, members, _ in hub.flush().batches:
        assert members and SERVER.is_valid(orjson.loads(payload))


Sessions.TestCase.settings = settings(settings.default, stateful_step_count=25)
test_sessions = Sessions.TestCase
