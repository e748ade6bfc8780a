"""One client connection's protocol state (Sans-I/O): messages and a clock in, replies and a close decision out.

The transports only pump bytes: they hand each client message with the monotonic time to
:meth:`Session.receive` and write the returned payloads in order, and call :meth:`Session.release`
when the connection ends. The session owns the rate limit and the flood count, parses with
:mod:`ticker.protocol` and dispatches to the hub. It never touches a socket, an event loop or a
clock; it is on the inbound path only, never on the fan-out's. A stream whose symbols are fixed
by its URL (``/sse``) needs no session: :func:`query_symbols` and :func:`open_stream` serve it.

With ``--auth jwt`` the session also holds who is connected (an :class:`~ticker.entitlements.Identity`):
an ``auth`` or ``refresh`` message comes out as :attr:`Outcome.verify`; the transport checks the
token (an I/O matter: a JWKS may need fetching) and hands the result back to
:meth:`Session.authorize` or :meth:`Session.reject`. Each symbol is carried real-time under its
own hub key or delayed under :func:`~ticker.delay.delayed_key`, as the entitlements say.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ticker import protocol
from ticker.barhub import BarHub
from ticker.bars import DEFAULT_LIMIT, parse_interval
from ticker.delay import delayed_key, is_delayed_key, split_keys, symbol_of
from ticker.entitlements import EVERYTHING, Entitlements, Identity, Tier, UserSlots
from ticker.errors import (
    AUTH_FAILED,
    BAD_REQUEST,
    FLOOD,
    INVALID_SYMBOL,
    RATE_LIMITED,
    TOKEN_EXPIRED,
    UNAUTHORIZED,
    USER_LIMIT,
    AuthReason,
    Disconnect,
    ForbiddenSymbols,
    InvalidSymbol,
    ProtocolError,
    Scope,
    TokenRejected,
    TooManyBarSubscriptions,
    TooManySymbols,
    UnknownSymbols,
    invalid_symbols_message,
)
from ticker.hub import Hub
from ticker.tokenbucket import TokenBucket
from ticker.views import ViewSpec, interval_of, is_view_key, spec_of

PLAIN = ViewSpec()

S = TypeVar("S", bound=Hashable)

RATE_LIMITED_TEXT = "too many messages; slow down (message dropped)"
#: A message costs one token of the rate limit, plus one for every full this many characters (or bytes) it holds.
BYTES_PER_TOKEN = 4096
BINARY_TEXT = "binary frames are not supported; send JSON text frames"


@dataclass(slots=True, frozen=True)
class BarRequest:
    """A bar subscription the session accepted: the transport sends its ``history`` newest bars (``bars``),
    then makes it live (:meth:`BarHub.start`). ``key`` is its hub key (the delayed key for a delayed user)."""

    symbol: str
    interval: str
    key: str
    history: int = DEFAULT_LIMIT


@dataclass(slots=True)
class Outcome:
    """What one input produced: ``replies`` to write in order, the ``errors`` codes among them (for
    ``ticker_client_errors{code}``), the ``auth_failures`` reasons (``ticker_auth_failures_total``),
    the hub keys an unsubscribe or a narrowed token dropped (``unsubscribed``: updates held back for
    them are void), a token to ``verify`` before the next input, the bar subscriptions whose history the
    transport must send (``bars``: reading it may wait for a backfill), and the ``close`` decision, if any."""

    replies: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    auth_failures: list[AuthReason] = field(default_factory=list)
    unsubscribed: list[str] = field(default_factory=list)
    verify: protocol.Auth | None = None
    bars: list[BarRequest] = field(default_factory=list)
    close: Disconnect | None = None

    def error(
        self,
        code: str,
        message: str,
        symbols: Sequence[str] | None = None,
        suggestions: dict[str, list[str]] | None = None,
    ) -> None:
        """Add an ``error`` reply."""
        self.errors.append(code)
        self.replies.append(protocol.error(code, message, symbols, suggestions))

    def forbidden(self, symbols: Sequence[str]) -> None:
        """Add a ``forbidden_symbol`` error naming ``symbols``."""
        exc = ForbiddenSymbols(symbols)
        self.error(exc.code, exc.message, exc.symbols)
        self.auth_failures.append("forbidden_symbol")


@dataclass(slots=True)
class Access:
    """The server's side of admission, shared by every session of a node."""

    #: ``--auth jwt``: a connection must present a token before it gets data.
    required: bool = False
    slots: UserSlots = field(default_factory=UserSlots)
    #: Seconds a WebSocket without a header token has to send a good ``auth`` (``--auth-timeout``).
    auth_timeout: float = 10.0
    #: Seconds of clock skew allowed past ``exp`` (``--jwt-leeway``): a token admitted within it is not cut at once.
    leeway: float = 0.0
    #: The highest rate a subscription may have: one entry per flush (1000 / ``--flush-ms``).
    max_hz: float = 50.0


class SymbolBook(Protocol):
    """What a session asks the node about symbols: which are unknown, and the state of those that are not live."""

    def unknown(
        self, symbols: Sequence[str], allow: Callable[[str], bool] | None = None
    ) -> UnknownSymbols | None:
        """The refusal of those ``symbols`` no running feed knows, suggesting only symbols ``allow`` passes; or None."""

    def statuses(self, symbols: Iterable[str], remember: bool = True) -> list[dict[str, str]]:
        """``{"s","state","reason"}`` of each of ``symbols`` that is not ``live`` (``remember``: a subscriber is told)."""


class AnySymbol:
    """The book of ``--unknown-symbols allow`` and of tests: every symbol known and live."""

    def unknown(
        self, symbols: Sequence[str], allow: Callable[[str], bool] | None = None
    ) -> UnknownSymbols | None:
        return None

    def statuses(self, symbols: Iterable[str], remember: bool = True) -> list[dict[str, str]]:
        return []


ANY_SYMBOL = AnySymbol()

#: The identity of every connection with ``--auth none``: anonymous, never expiring, entitled to everything.
ANONYMOUS = Identity("", math.inf, EVERYTHING)
OPEN = Access()


def _items(query: str) -> Iterator[str]:
    return (part for part in query.split(",") if part.strip())


def query_symbols(query: str, limit: int, scope: Scope) -> list[str]:
    """The symbols of a URL query value such as ``aapl,MSFT`` (``?symbols=`` of /sse and /api/quotes).

    Normalized, in first-seen order; empty items and repeats are ignored. Raises
    :class:`InvalidSymbol` naming every bad item and :class:`TooManySymbols` past ``limit``
    (its message says the limit is per ``scope``).
    """
    valid, invalid = protocol.split_symbols(_items(query))
    if invalid:
        raise InvalidSymbol(*invalid)
    if len(valid) > limit:
        raise TooManySymbols(limit, len(valid), scope)
    return valid


def query_bars(query: str, limit: int) -> list[tuple[str, str]]:
    """The (symbol, interval) pairs of ``?bars=AAPL:1m,msft:5m`` (``/sse``): normalized, first-seen order,
    repeats ignored. The interval follows the last ``:`` (a symbol may hold one). Raises
    :class:`InvalidSymbol` naming every bad symbol, :class:`~ticker.bars.InvalidInterval` (``bad_request``)
    for a missing or bad interval, and :class:`TooManyBarSubscriptions` past ``limit``."""
    pairs: dict[tuple[str, str], None] = {}
    invalid: list[str] = []
    for item in _items(query):
        raw, colon, interval = item.strip().rpartition(":")
        if not colon:
            raise ProtocolError(BAD_REQUEST, f"bars are named SYMBOL:INTERVAL (AAPL:1m), not {item[:40]!r}")
        valid, bad = protocol.split_symbols([raw])
        invalid += bad
        if valid:
            pairs[valid[0], parse_interval(interval)] = None
    if invalid:
        raise InvalidSymbol(*invalid)
    if len(pairs) > limit:
        raise TooManyBarSubscriptions(limit, len(pairs))
    return list(pairs)


def visible_to(entitlements: Entitlements) -> Callable[[str], bool]:
    """Whether a symbol may be named to this user (in a suggestion, a search result): not forbidden."""
    return lambda symbol: entitlements.tier(symbol) is not Tier.FORBIDDEN


def suggestions_of(exc: UnknownSymbols) -> dict[str, list[str]]:
    """The ``suggestions`` field of an ``unknown_symbol`` error: symbol → the closest known symbols."""
    return {sym: [s for s, _name in near] for sym, near in exc.suggestions.items() if near}


def symbol_limit(hub_limit: int, entitlements: Entitlements) -> int:
    """The symbols one connection of this user may hold: ``--max-symbols``, lowered by the token's ``max_symbols``."""
    cap = entitlements.max_symbols
    return hub_limit if cap is None else min(hub_limit, cap)


def hub_keys(symbols: Sequence[str], entitlements: Entitlements) -> tuple[list[str], list[str]]:
    """(hub keys, delayed symbols) for a request whose every symbol must be allowed; raises
    :class:`ForbiddenSymbols` naming those that are not."""
    rt, dl, no = entitlements.split(symbols)
    if no:
        raise ForbiddenSymbols(no)
    return rt + [delayed_key(s) for s in dl], dl


def interval_for(asked: float | None, cap: float | None, max_hz: float) -> int:
    """Microseconds between a symbol's entries: the rate ``asked`` (None: unthrottled), lowered to the token's
    ``cap`` and to the server's ``max_hz``; 0 when neither asked nor capped."""
    rate = asked if cap is None else cap if asked is None else min(asked, cap)
    return 0 if rate is None else max(interval_of(rate), interval_of(max_hz))


def view_key(base: str, interval_us: int, view: ViewSpec) -> str:
    """The hub key of hub key ``base`` at ``interval_us`` with the connection's field and delta ``view``."""
    if not interval_us and view.plain:
        return base
    return ViewSpec(interval_us, view.fields, view.delta).key(base)


def query_view(max_hz: str | None, fields: str | None, delta: str | None) -> tuple[float | None, ViewSpec]:
    """The options of a URL (``?max_hz=2&fields=p,b,a&delta=1`` on /ws and /sse): (the rate asked, the view).
    Raises ``bad_request`` (:class:`ProtocolError`) for a bad value, naming unknown fields."""
    rate = None
    if max_hz is not None:
        try:
            number = float(max_hz)
        except ValueError:
            number = math.nan
        rate = protocol.parse_max_hz(number)
    names = (
        None if fields is None else protocol.parse_fields([f.strip() for f in fields.split(",") if f.strip()])
    )
    on = delta is not None and delta.lower() in ("1", "true", "yes", "on")
    if delta is not None and not on and delta.lower() not in ("0", "false", "no", "off", ""):
        raise ProtocolError(BAD_REQUEST, '"delta" must be 1 or 0 (true or false)')
    return rate, ViewSpec(0, names, on)


def stream_keys(
    symbols: Sequence[str], entitlements: Entitlements, max_hz: float | None, view: ViewSpec, access: Access
) -> tuple[list[str], list[str]]:
    """(hub keys, delayed symbols) of ``/sse?symbols=...`` with its rate and view, as :func:`hub_keys`."""
    keys, dl = hub_keys(symbols, entitlements)
    interval = interval_for(max_hz, entitlements.max_hz, access.max_hz)
    return [view_key(k, interval, view) for k in keys], dl


def open_stream(hub: Hub[S], subscriber: S, keys: Sequence[str], now: float = -math.inf) -> bytes:
    """Subscribe ``subscriber`` to the hub ``keys`` of ``/sse?symbols=...`` (see :func:`hub_keys`) at monotonic
    ``now``; return the opening ``snapshot`` payload. Raises :class:`TooManySymbols`, subscribing nothing, past
    the hub's cap."""
    _added, snap = hub.subscribe(subscriber, keys, now=now)
    return protocol.encode_snapshot(snap, hub.epoch)


class Session(Generic[S]):
    """The protocol state of ``subscriber``, one connection: who it is, its rate limit, flood count and close decision.

    Its symbol set is kept by ``hub`` (as hub keys). Every input costs: a message one token plus one per
    :data:`BYTES_PER_TOKEN`, a ping, pong or non-final fragment one token (:meth:`frame`). A message
    refused by the rate limit is dropped; the first and every tenth in a row get a ``rate_limited``
    error, and more than ``rate_burst`` refused net of those accepted since close the connection
    (:data:`~ticker.errors.FLOOD`, 1008). With ``access.required`` and no
    ``identity`` yet, only ``auth`` and ``ping`` are served. After a close decision, and after
    :meth:`release`, every input is ignored.
    """

    __slots__ = (
        "access",
        "asked",
        "bar_hub",
        "book",
        "bucket",
        "closed",
        "delayed",
        "flood_after",
        "holds_slot",
        "hub",
        "identity",
        "opened_at",
        "refused_run",
        "subscriber",
        "told",
        "view",
        "violations",
    )

    def __init__(
        self,
        hub: Hub[S],
        subscriber: S,
        rate_limit: float,
        rate_burst: int,
        now: float,
        access: Access = OPEN,
        identity: Identity | None = None,
        book: SymbolBook = ANY_SYMBOL,
        bar_hub: BarHub[S] | None = None,
    ) -> None:
        """``identity``: the bearer of a token the transport already verified (a header); None waits for ``auth``.
        ``book`` says which symbols are unknown and which are not live; ``bar_hub`` holds the bar
        subscriptions (None: a hub of the session's own, with the default cap)."""
        self.hub = hub
        self.bar_hub: BarHub[S] = BarHub() if bar_hub is None else bar_hub
        self.book = book
        #: None once released: the connection ended and no longer holds, nor is held by, its session.
        self.subscriber: S | None = subscriber
        self.bucket = TokenBucket(rate_limit, rate_burst, now)
        self.flood_after = rate_burst
        self.violations = 0  # inputs refused by the rate limit, less one for each accepted since
        self.refused_run = 0  # inputs refused in a row (who is told rate_limited)
        self.closed: Disconnect | None = None
        self.access = access
        self.identity: Identity | None = identity if access.required else ANONYMOUS
        self.holds_slot = False
        self.opened_at = now
        #: How many of the connection's symbols it receives delayed (the ``ticker_connections_delayed`` gauge).
        self.delayed = 0
        #: The connection's fields and delta options (``options``; its interval is per symbol).
        self.view = PLAIN
        #: The ``max_hz`` asked per symbol, for the symbols subscribed with one (None: none ever was).
        self.asked: dict[str, float] | None = None
        #: Whether a snapshot told the connection its epoch: its first subscribe gets one even when empty.
        self.told = False

    @property
    def symbols(self) -> frozenset[str]:
        """The connection's current symbol set (empty once released)."""
        sub = self.subscriber
        return frozenset() if sub is None else frozenset(symbol_of(k) for k in self.hub.symbols_of(sub))

    def release(self) -> None:
        """The connection ended: forget it, so that the two do not keep each other alive until the
        cycle collector runs, give back its user slot, and ignore any later input. Its symbols are the hub's to drop."""
        self.subscriber = None
        if self.holds_slot and self.identity is not None:
            self.holds_slot = False
            self.access.slots.give_back(self.identity.sub)

    def open(
        self,
        query: str,
        max_hz: str | None = None,
        fields: str | None = None,
        delta: str | None = None,
        now: float = -math.inf,
    ) -> Outcome:
        """Admit a header token's bearer, then take the URL's options (``?fields=``, ``?delta=``) and subscribe the
        symbols of ``/ws?symbols=...`` (at ``?max_hz=``) as a ``subscribe`` would. A bad option is a
        ``bad_request`` error, and the URL's symbols are then not subscribed."""
        out = Outcome()
        sub = self.subscriber
        if sub is None:
            return out
        if self.access.required and self.identity is not None and not self._admit(self.identity, out):
            return out
        try:
            rate, view = query_view(max_hz, fields, delta)
        except ProtocolError as exc:
            out.error(exc.code, exc.message)
            return out
        self.view = PLAIN if view.plain else view
        if query:
            valid, invalid = protocol.split_symbols(_items(query))
            if self.identity is None:
                self._unauthorized(out)
            else:
                self._subscribe(sub, valid, invalid, out, rate, now)
        return out

    def receive(self, message: str | bytes, now: float) -> Outcome:
        """Take one client message (a text frame as ``str``, a binary one as ``bytes``) at monotonic time ``now``."""
        out = Outcome()
        sub = self.subscriber
        if self.closed is not None or sub is None:
            return out
        if not self._spend(now, out):
            return out
        extra = len(message) // BYTES_PER_TOKEN
        if extra:  # a big message is let in on one token and borrows the rest from the next ones
            self.bucket.tokens -= extra
        if isinstance(message, bytes):
            out.error(BAD_REQUEST, BINARY_TEXT)
            return out
        try:
            cmd = protocol.parse_client_message(message)
        except ProtocolError as exc:
            out.error(exc.code, exc.message)
            return out
        if isinstance(cmd, protocol.Ping):
            out.replies.append(protocol.pong(cmd.id))
        elif isinstance(cmd, protocol.Auth):
            if not self.access.required:
                out.error(BAD_REQUEST, "this server does not use tokens (--auth none)")
            elif cmd.refresh and self.identity is None:
                self._unauthorized(out)
            else:
                out.verify = cmd
        elif self.identity is None:
            self._unauthorized(out)
        elif isinstance(cmd, protocol.Subscribe):
            self._subscribe(sub, cmd.symbols, cmd.invalid, out, cmd.max_hz, now)
        elif isinstance(cmd, protocol.Unsubscribe):
            self._unsubscribe(sub, cmd.symbols, cmd.invalid, out)
        elif isinstance(cmd, protocol.Options):
            self._options(sub, cmd, out, now)
        elif isinstance(cmd, protocol.SubscribeBars):
            self._subscribe_bars(sub, cmd, out)
        else:
            self.bar_hub.drop(sub, cmd.symbol, cmd.interval)
            out.replies.append(protocol.bars_unsubscribed(cmd.symbol, cmd.interval))
        return out

    def frame(self, now: float) -> Outcome:
        """Charge a frame that is not a whole message: a ping, a pong, or a fragment that does not end its
        message (Tornado answers pings and joins fragments itself). Each costs one token, as a message
        does; refused ones count towards the flood close (1008) like dropped messages."""
        out = Outcome()
        if self.closed is None and self.subscriber is not None:
            self._spend(now, out)
        return out

    def _spend(self, now: float, out: Outcome) -> bool:
        """Take a token for one input; False when there is none, with a ``rate_limited`` error to the first
        and every tenth refused in a row. Each refusal counts towards the flood close and each accepted input
        takes one back, so past ``rate_burst`` refusals net the connection closes: also a flooder that gets
        a token now and then (at more than twice the rate)."""
        if self.bucket.take(now):
            if self.violations:
                self.violations -= 1
            self.refused_run = 0
            return True
        self.violations += 1
        self.refused_run += 1
        if self.violations > self.flood_after:
            self.closed = out.close = FLOOD
        elif self.refused_run == 1 or self.refused_run % 10 == 0:
            out.error(RATE_LIMITED, RATE_LIMITED_TEXT)
        return False

    # -- tokens ------------------------------------------------------------------------------
    def authorize(self, identity: Identity, now: float = -math.inf) -> Outcome:
        """The token of :attr:`Outcome.verify` is good: admit its bearer, or replace the token in force."""
        out = Outcome()
        sub = self.subscriber
        if self.closed is not None or sub is None:
            return out
        old = self.identity
        if old is None:
            if self._admit(identity, out):
                self.identity = identity
                out.replies.append(protocol.authenticated(identity.sub, identity.exp))
            return out
        if identity.sub != old.sub:
            out.error(UNAUTHORIZED, "a refresh token must name the same sub; the token in force stays")
            out.auth_failures.append("invalid")
            return out
        self.identity = identity
        out.replies.append(protocol.authenticated(identity.sub, identity.exp))
        if identity.entitlements != old.entitlements:
            gone = self._reassess_bars(sub, identity.entitlements, out)
            self._reassess(sub, identity.entitlements, out, gone, now)
        return out

    def reject(self, exc: TokenRejected) -> Outcome:
        """The token of :attr:`Outcome.verify` is bad: close 4001 before admission; after it, keep the token in force."""
        out = Outcome()
        if self.closed is not None or self.subscriber is None:
            return out
        out.auth_failures.append(exc.reason)
        if self.identity is None:
            self.closed = out.close = AUTH_FAILED
        else:
            out.error(UNAUTHORIZED, f"refresh refused: {exc.message}; the token in force stays")
        return out

    def expired(self, now: float, wall: float) -> Disconnect | None:
        """Called about once a second: the close decision when ``auth`` did not come within
        ``--auth-timeout`` (4001) or the token's ``exp`` passed (4003); None otherwise."""
        if self.closed is not None or self.subscriber is None or not self.access.required:
            return None
        ident = self.identity
        if ident is None:
            if now - self.opened_at >= self.access.auth_timeout:
                self.closed = AUTH_FAILED
        elif wall >= ident.exp + self.access.leeway:
            self.closed = TOKEN_EXPIRED
        return self.closed

    def _admit(self, identity: Identity, out: Outcome) -> bool:
        if not self.access.slots.take(identity):
            out.auth_failures.append("user_limit")
            self.closed = out.close = USER_LIMIT
            return False
        self.holds_slot = True
        return True

    def _unauthorized(self, out: Outcome) -> None:
        out.error(UNAUTHORIZED, 'authenticate first: send {"op":"auth","token":"<jwt>"}')
        out.auth_failures.append("missing")

    # -- subscriptions -----------------------------------------------------------------------
    def _subscribe(
        self,
        sub: S,
        symbols: list[str],
        invalid: list[str],
        out: Outcome,
        max_hz: float | None = None,
        now: float = -math.inf,
    ) -> None:
        if invalid:
            out.error(INVALID_SYMBOL, invalid_symbols_message(invalid))
        hub, ents = self.hub, self._entitlements()
        held = hub.symbols_of(sub)
        limit = symbol_limit(hub.max_symbols, ents)
        wanted = len({symbol_of(k) for k in held}.union(symbols))
        if wanted > limit:
            exc = TooManySymbols(limit, wanted)
            out.error(exc.code, exc.message)
            return
        refused = self.book.unknown(symbols, visible_to(ents) if self.access.required else None)
        if refused is not None:
            out.error(refused.code, refused.message, refused.symbols, suggestions_of(refused))
            gone = set(refused.symbols)
            symbols = [s for s in symbols if s not in gone]
        rt, dl, no = ents.split(symbols)
        if no:
            out.forbidden(no)
        self._ask(rt + dl, max_hz)
        keys = [self._key(s, Tier.REALTIME, ents) for s in rt] + [
            self._key(s, Tier.DELAYED, ents) for s in dl
        ]
        moving = set(rt).union(dl)
        before = {symbol_of(k): k for k in held}
        replacing = [k for sym, k in before.items() if sym in moving]  # a symbol subscribed again: its rate
        added, snap = hub.subscribe(sub, keys, replacing, now)
        out.unsubscribed = [k for k in replacing if k not in keys]
        self._confirm(sub, out)
        if snap or (added and not self.told):  # the epoch before the first entry, so a client can dedupe
            self.told = True
            out.replies.append(protocol.encode_snapshot(snap, hub.epoch))
        fresh = [sym for k in added if (sym := symbol_of(k)) not in before]
        if fresh:
            states = self.book.statuses(fresh)
            if states:
                out.replies.append(protocol.status(states))

    def _ask(self, symbols: list[str], max_hz: float | None) -> None:
        """Remember the rate asked for ``symbols`` (None: unthrottled) until they are unsubscribed."""
        asked = self.asked
        if max_hz is not None:
            if asked is None:
                asked = self.asked = {}
            asked.update(dict.fromkeys(symbols, max_hz))
        elif asked:
            for s in symbols:
                asked.pop(s, None)

    def _key(self, symbol: str, tier: Tier, ents: Entitlements) -> str:
        """The hub key of ``symbol`` in ``tier`` for this connection: its rate (asked and capped) and view."""
        base = delayed_key(symbol) if tier is Tier.DELAYED else symbol
        asked = self.asked.get(symbol) if self.asked else None
        if asked is None and ents.max_hz is None and self.view is PLAIN:
            return base
        return view_key(base, interval_for(asked, ents.max_hz, self.access.max_hz), self.view)

    def _options(self, sub: S, cmd: protocol.Options, out: Outcome, now: float) -> None:
        """Change the fields and delta options: every held symbol moves to its new key, then the ``options``
        in force and a ``snapshot`` of every held symbol under them (full entries)."""
        v = self.view
        fields = v.fields if cmd.fields is protocol.UNCHANGED else cmd.fields
        delta = v.delta if cmd.delta is protocol.UNCHANGED else cmd.delta
        view = ViewSpec(0, fields, delta)
        self.view = PLAIN if view.plain else view
        ents, hub = self._entitlements(), self.hub
        held = sorted(hub.symbols_of(sub))
        keys = [
            self._key(symbol_of(k), Tier.DELAYED if is_delayed_key(k) else Tier.REALTIME, ents) for k in held
        ]
        hub.subscribe(sub, keys, held, now)
        out.unsubscribed = [k for k in held if k not in keys]
        out.replies.append(protocol.options(fields, delta))
        snap = hub.last_encoded(keys)
        if snap:
            out.replies.append(protocol.encode_snapshot(snap, hub.epoch))

    def _unsubscribe(self, sub: S, symbols: list[str], invalid: list[str], out: Outcome) -> None:
        if invalid:
            out.error(INVALID_SYMBOL, invalid_symbols_message(invalid))
        keys = self._held_keys(sub, symbols)
        self.hub.unsubscribe(sub, keys)
        out.unsubscribed = keys
        self._ask(symbols, None)
        self._confirm(sub, out)

    def _held_keys(self, sub: S, symbols: Iterable[str]) -> list[str]:
        """The hub keys ``sub`` holds for ``symbols`` (in any tier, any view)."""
        wanted = set(symbols)
        return [k for k in self.hub.symbols_of(sub) if symbol_of(k) in wanted]

    def drop(self, symbols: list[str], refusal: ProtocolError) -> Outcome:
        """The node refuses ``symbols`` after the fact (a pending symbol the directory does not know): unsubscribe
        them in either tier (then ``subscribed``) and end their bar subscriptions (``bars_unsubscribed``), then
        the refusal naming them."""
        out = Outcome()
        sub = self.subscriber
        if self.closed is not None or sub is None:
            return out
        keys = self._held_keys(sub, symbols)
        if keys:
            self.hub.unsubscribe(sub, keys)
            out.unsubscribed = keys
            self._ask(symbols, None)
            self._confirm(sub, out)
        dropped = set(symbols)
        for symbol, interval in sorted(self.bar_hub.holds(sub)):  # bar subscriptions of them end too
            if symbol in dropped:
                self.bar_hub.drop(sub, symbol, interval)
                out.replies.append(protocol.bars_unsubscribed(symbol, interval))
        extra = suggestions_of(refusal) if isinstance(refusal, UnknownSymbols) else None
        out.error(refusal.code, refusal.message, symbols, extra)
        return out

    def _reassess(
        self, sub: S, ents: Entitlements, out: Outcome, bars_forbidden: list[str], now: float = -math.inf
    ) -> None:
        """A refreshed token changed the entitlements: move symbols between tiers, drop the forbidden ones
        (one ``forbidden_symbol`` naming them and ``bars_forbidden``, those of dropped bar subscriptions)."""
        drop: list[str] = []
        add: list[str] = []
        forbidden: list[str] = []
        for key in sorted(self.hub.symbols_of(sub)):
            sym = symbol_of(key)
            tier = ents.tier(sym)
            if tier is Tier.FORBIDDEN:
                forbidden.append(sym)
                drop.append(key)
            elif (new := self._key(sym, tier, ents)) != key:  # another tier, or another rate cap
                drop.append(key)
                add.append(new)
        keep = sorted(symbol_of(k) for k in self.hub.symbols_of(sub) if k not in drop) + [
            symbol_of(k) for k in add
        ]
        limit = symbol_limit(self.hub.max_symbols, ents)
        trimmed = sorted(keep)[limit:]  # a lowered max_symbols: the last symbols in sort order go
        if trimmed:
            gone = set(trimmed)
            drop += [k for k in sorted(self.hub.symbols_of(sub)) if symbol_of(k) in gone and k not in drop]
            add = [k for k in add if symbol_of(k) not in gone]
        forbidden += [s for s in bars_forbidden if s not in forbidden]
        if not drop:
            if forbidden:
                out.forbidden(forbidden)
            return
        _added, snap = self.hub.subscribe(sub, add, drop, now)
        out.unsubscribed = drop
        kept = {symbol_of(k) for k in add}
        self._ask([sym for k in drop if (sym := symbol_of(k)) not in kept], None)
        self._confirm(sub, out)
        if snap:
            out.replies.append(protocol.encode_snapshot(snap, self.hub.epoch))
        if forbidden:
            out.forbidden(forbidden)
        if trimmed:
            exc = TooManySymbols(limit, len(keep))
            out.error(exc.code, f"{exc.message}; dropped {', '.join(trimmed[:10])}", trimmed)

    def _subscribe_bars(self, sub: S, cmd: protocol.SubscribeBars, out: Outcome) -> None:
        """Check a ``subscribe_bars`` as a ``subscribe`` is checked (the parser did the syntax): cap,
        directory, entitlements; then hold it and ask the transport for its history."""
        bars, symbol = self.bar_hub, cmd.symbol
        held = bars.holds(sub)
        if (symbol, cmd.interval) not in held and len(held) >= bars.max_per_connection:
            exc = TooManyBarSubscriptions(bars.max_per_connection, len(held) + 1)
            out.error(exc.code, exc.message, [symbol])
            return
        ents = self._entitlements()
        refused = self.book.unknown([symbol], visible_to(ents) if self.access.required else None)
        if refused is not None:
            out.error(refused.code, refused.message, refused.symbols, suggestions_of(refused))
            return
        tier = ents.tier(symbol)
        if tier is Tier.FORBIDDEN:
            out.forbidden([symbol])
            return
        key = delayed_key(symbol) if tier is Tier.DELAYED else symbol
        bars.hold(sub, symbol, cmd.interval, key, cmd.history)
        out.bars.append(BarRequest(symbol, cmd.interval, key, cmd.history))

    def _reassess_bars(self, sub: S, ents: Entitlements, out: Outcome) -> list[str]:
        """A refreshed token: bar subscriptions of forbidden symbols end (``bars_unsubscribed``; the symbols are
        returned for the ``forbidden_symbol`` error); those whose tier moved start again under their new key
        (a new ``bars``)."""
        forbidden: list[str] = []
        for (symbol, interval), h in sorted(self.bar_hub.holds(sub).items()):
            tier = ents.tier(symbol)
            if tier is Tier.FORBIDDEN:
                self.bar_hub.drop(sub, symbol, interval)
                out.replies.append(protocol.bars_unsubscribed(symbol, interval))
                if symbol not in forbidden:
                    forbidden.append(symbol)
                continue
            key = delayed_key(symbol) if tier is Tier.DELAYED else symbol
            if key != h.key:
                self.bar_hub.hold(sub, symbol, interval, key, h.history)
                out.bars.append(BarRequest(symbol, interval, key, h.history))
        return forbidden

    def _confirm(self, sub: S, out: Outcome) -> None:
        """Append ``subscribed`` with the connection's set, its delayed part and the rates granted."""
        keys = self.hub.symbols_of(sub)
        rt, dl = split_keys(keys)
        self.delayed = len(dl)
        rates = {symbol_of(k): rate for k in keys if is_view_key(k) and (rate := spec_of(k).rate) is not None}
        out.replies.append(protocol.subscribed(rt | dl, dl, rates))

    def _entitlements(self) -> Entitlements:
        ident = self.identity
        return EVERYTHING if ident is None else ident.entitlements
