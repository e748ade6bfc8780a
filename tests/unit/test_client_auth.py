"""The client's token handling without a socket: reading ``exp``, when to renew, the refresh loop, auth errors."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aiohttp
import jwt
import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from tests.support.clock import ManualClock
from ticker.client import (
    AuthenticationFailed,
    ConnectionLost,
    Event,
    EventKind,
    ForbiddenSymbolError,
    ServerError,
    TickerClient,
    TokenProviderError,
    TooManyConnectionsError,
)
from ticker.client.auth import (
    MIN_REFRESH_INTERVAL,
    REFRESH_MARGIN,
    TokenSource,
    refresh_delay,
    token_expiry,
)
from ticker.client.link import ServerLink, Subscriptions

NOW = 1_700_000_000.0
SECRET = "unit-test-secret-with-at-least-32-bytes!"


def mint(exp: float | None = None, **claims: Any) -> str:
    if exp is not None:
        claims["exp"] = exp
    return jwt.encode({"sub": "alice", **claims}, SECRET, algorithm="HS256")


def unsigned(payload: bytes) -> str:
    seg = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{seg}.c2ln"


# -- reading exp ---------------------------------------------------------------------------------
def test_token_expiry_reads_exp_without_the_key():
    assert token_expiry(mint(int(NOW) + 60)) == NOW + 60
    for sub in ("a", "ab", "abc", "abcd"):  # every padding length of the payload segment
        assert token_expiry(mint(int(NOW), pad=sub)) == NOW
    assert token_expiry(unsigned(b'{"exp": 1700000000.5}')) == 1_700_000_000.5


@pytest.mark.parametrize(
    "token",
    [
        mint(None),  # no exp
        "not-a-jwt",
        "a.b",
        "a.b.c.d.e",  # JWE
        unsigned(b"not json"),
        unsigned(b"\xff\xfe"),
        unsigned(b"[1, 2]"),
        unsigned(b'{"exp": "1700000000"}'),
        unsigned(b'{"exp": true}'),
        unsigned(b'{"exp": null}'),
        unsigned(b'{"exp": 1' + b"0" * 400 + b"}"),  # too big for a float
        "x.%%%%.y",
    ],
)
def test_token_expiry_is_none_for_what_it_cannot_read(token: str):
    assert token_expiry(token) is None


def test_refresh_at_80_percent_of_the_lifetime_and_at_least_the_margin_before_exp():
    assert refresh_delay(NOW + 3600, NOW) == pytest.approx(2880)
    assert refresh_delay(NOW + 20, NOW) == pytest.approx(20 - REFRESH_MARGIN)
    assert refresh_delay(NOW + 6, NOW) == pytest.approx(1)
    assert refresh_delay(NOW + 3, NOW) == 0
    assert refresh_delay(NOW - 10, NOW) == 0


# -- the token source ----------------------------------------------------------------------------
class Provider:
    """An async token provider minting tokens that live ``ttl`` seconds on ``clock``; ``fail`` makes it raise."""

    def __init__(self, clock: ManualClock, ttl: float = 60) -> None:
        self.clock = clock
        self.ttl = ttl
        self.calls = 0
        self.fail: Exception | None = None
        self.tokens: list[str] = []

    async def __call__(self) -> str:
        if self.fail is not None:
            raise self.fail
        self.calls += 1
        self.tokens.append(mint(self.clock() + self.ttl, n=self.calls))
        return self.tokens[-1]


def test_token_source_needs_exactly_one_of_token_and_provider():
    clock = ManualClock(NOW)
    with pytest.raises(ValueError, match="not both"):
        TokenSource()
    with pytest.raises(ValueError, match="not both"):
        TokenSource("t", Provider(clock))
    with pytest.raises(ValueError, match="non-empty"):
        TokenSource("")
    with pytest.raises(ValueError, match="not both"):
        TickerClient("ws://h/ws", token="t", token_provider=Provider(clock))


async def test_a_fixed_token_is_used_as_is_and_warned_about_once_near_expiry(
    caplog: pytest.LogCaptureFixture,
):
    clock = ManualClock(NOW)
    token = mint(NOW + 100)
    src = TokenSource(token, clock=clock)
    assert not src.renewable and not src.stale() and await src.current() == token
    assert src.next_renewal() == pytest.approx(80)
    clock.now += 97
    assert not src.stale() and await src.current() == token  # nothing to renew it with
    with caplog.at_level(logging.WARNING, logger="ticker.client"):
        src.warn_expiring()
        src.warn_expiring()
    assert len(caplog.records) == 1 and "expires in 3 s" in caplog.text
    assert token not in caplog.text and token.split(".")[1] not in caplog.text
    with pytest.raises(TokenProviderError, match="cannot be renewed"):
        await src.renew()


async def test_a_provider_is_asked_first_near_expiry_and_after_a_refusal():
    clock = ManualClock(NOW)
    provider = Provider(clock, ttl=60)
    src = TokenSource(provider=provider, clock=clock)
    assert src.stale()
    first = await src.current()
    assert provider.calls == 1 and src.exp == NOW + 60
    assert await src.current() == first and provider.calls == 1
    clock.now += 60 - REFRESH_MARGIN - 0.5  # still more than the margin left
    assert await src.current() == first and provider.calls == 1
    clock.now += 1  # within the margin: renewed before connecting
    second = await src.current()
    assert second != first and provider.calls == 2
    src.reject()
    assert await src.current() != second and provider.calls == 3
    assert src.calls == 3


async def test_provider_failures_become_token_provider_errors():
    clock = ManualClock(NOW)
    provider = Provider(clock)
    src = TokenSource(provider=provider, clock=clock)
    provider.fail = RuntimeError("token endpoint down")
    with pytest.raises(TokenProviderError, match="RuntimeError: token endpoint down"):
        await src.current()

    async def empty() -> str:
        return ""

    with pytest.raises(TokenProviderError, match="not a non-empty str"):
        await TokenSource(provider=empty, clock=clock).current()
    assert src.calls == 0


# -- the refresh loop of a connection -----------------------------------------------------------
class FakeLink:
    """Stands in for a ServerLink: records refreshed tokens, answers with ``errors`` once
    (or with each list of ``answers`` in turn)."""

    def __init__(self) -> None:
        self.refreshed: list[str] = []
        self.errors: list[ServerError] = []
        self.answers: list[list[ServerError]] = []

    async def refresh(self, token: str) -> list[ServerError]:
        self.refreshed.append(token)
        if self.answers:
            return self.answers.pop(0)
        errors, self.errors = self.errors, []
        return errors


def fake_sleep(clock: ManualClock, slept: list[float]) -> Callable[[float], Awaitable[None]]:
    """A sleep for the client's refresher that moves the manual clock instead of waiting."""

    async def sleep(delay: float) -> None:
        slept.append(delay)
        clock.now += delay
        await asyncio.sleep(0)

    return sleep


async def run_refresher(
    client: TickerClient, link: FakeLink, src: TokenSource, until: Callable[[], bool]
) -> None:
    task = asyncio.create_task(client._refresher(cast(ServerLink, link), src))
    for _ in range(1000):
        if until():
            break
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert until()


async def test_the_refresher_renews_before_each_expiry_over_the_live_socket():
    clock = ManualClock(NOW)
    slept: list[float] = []
    provider = Provider(clock, ttl=100)
    src = TokenSource(provider=provider, clock=clock)
    await src.current()  # the token of the connect
    events: list[Event] = []
    client = TickerClient("ws://h/ws", token_provider=provider, on_event=events.append)
    client._sleep = fake_sleep(clock, slept)
    link = FakeLink()
    link.errors = [ForbiddenSymbolError("not entitled to BTC", ["BTC"])]
    await run_refresher(client, link, src, lambda: len(link.refreshed) == 3)
    assert slept[:3] == pytest.approx([80, 80, 80])  # 80 % of each token's 100 s
    assert link.refreshed == provider.tokens[1:4]  # each new token goes out as a refresh
    errors = [e.error for e in events if e.kind is EventKind.ERROR]
    assert len(errors) == 1 and isinstance(errors[0], ForbiddenSymbolError) and errors[0].symbols == ["BTC"]


async def test_the_refresher_never_spins_and_retries_a_failing_provider():
    clock = ManualClock(NOW)
    slept: list[float] = []
    provider = Provider(clock, ttl=2)  # shorter than the margin: renewal is always due
    src = TokenSource(provider=provider, clock=clock)
    await src.current()
    events: list[Event] = []
    client = TickerClient("ws://h/ws", token_provider=provider, on_event=events.append)
    client._sleep = fake_sleep(clock, slept)
    link = FakeLink()
    await run_refresher(client, link, src, lambda: len(link.refreshed) == 2)
    assert slept[:2] == [MIN_REFRESH_INTERVAL, MIN_REFRESH_INTERVAL]
    provider.fail = RuntimeError("down")
    slept.clear()
    await run_refresher(client, link, src, lambda: len(slept) >= 6)
    assert len(link.refreshed) == 2 and any(isinstance(e.error, TokenProviderError) for e in events)


async def test_a_refused_refresh_keeps_the_token_in_force_and_retries_with_backoff():
    clock = ManualClock(NOW)
    slept: list[float] = []
    provider = Provider(clock, ttl=100)
    src = TokenSource(provider=provider, clock=clock)
    first = await src.current()
    events: list[Event] = []
    client = TickerClient("ws://h/ws", token_provider=provider, on_event=events.append)
    client._sleep = fake_sleep(clock, slept)
    link = FakeLink()
    refused = ServerError("unauthorized", "refresh refused: bad signature; the token in force stays")
    link.answers = [[refused], [refused]]  # the third token is taken
    await run_refresher(client, link, src, lambda: len(link.refreshed) == 4)
    assert link.refreshed == provider.tokens[1:5]
    # Between the refusals: the refresher's backoff (0.5 s base, jittered), not the refused token's exp.
    assert slept[0] == pytest.approx(80) and all(d <= 1.0 for d in slept[1:3])
    # The third token was taken: the next renewal is 80 % of its lifetime from when it came.
    assert slept[3] == pytest.approx(80)
    assert src.exp == pytest.approx(NOW + sum(slept[:4]) + 100) and await src.current() == provider.tokens[4]
    assert first not in link.refreshed and src.calls == 5
    assert [e.error for e in events if e.kind is EventKind.ERROR] == [refused, refused]


async def test_a_refused_refresh_does_not_replace_the_token_in_force():
    clock = ManualClock(NOW)
    provider = Provider(clock, ttl=100)
    src = TokenSource(provider=provider, clock=clock)
    first = await src.current()
    client = TickerClient("ws://h/ws", token_provider=provider)
    link = FakeLink()
    link.errors = [ServerError("unauthorized", "refresh refused: another sub; the token in force stays")]
    assert await client._refresh_once(cast(ServerLink, link), src) is False
    assert await src.current() == first and src.exp == NOW + 100 and not src.stale()
    link.errors = [ForbiddenSymbolError("not entitled to BTC", ["BTC"])]  # taken, with a narrower set
    assert await client._refresh_once(cast(ServerLink, link), src) is True
    assert await src.current() == provider.tokens[-1] != first


async def test_the_refresher_only_warns_with_a_fixed_token(caplog):
    clock = ManualClock(NOW)
    slept: list[float] = []
    src = TokenSource(mint(NOW + 50), clock=clock)
    client = TickerClient("ws://h/ws", token=mint(NOW + 50))
    client._sleep = fake_sleep(clock, slept)
    link = FakeLink()
    with caplog.at_level(logging.WARNING, logger="ticker.client"):
        await run_refresher(client, link, src, lambda: "cannot be renewed" in caplog.text)
    assert slept == [pytest.approx(40)] and link.refreshed == []


# -- auth errors on connect and close ------------------------------------------------------------
def handshake_error(status: int) -> aiohttp.WSServerHandshakeError:
    url = URL("ws://h/ws")
    info = aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url)
    return aiohttp.WSServerHandshakeError(info, (), status=status, message="Invalid response status")


@pytest.mark.parametrize(
    ("exc", "static", "provider", "rejects"),
    [
        (handshake_error(401), AuthenticationFailed, AuthenticationFailed, True),
        (ConnectionLost("closed", 4001), AuthenticationFailed, AuthenticationFailed, True),
        (ConnectionLost("closed", 4003), AuthenticationFailed, ConnectionLost, True),
        (handshake_error(429), TooManyConnectionsError, TooManyConnectionsError, False),
        (ConnectionLost("closed", 4029), TooManyConnectionsError, TooManyConnectionsError, False),
        (ConnectionLost("closed", 1001), ConnectionLost, ConnectionLost, False),
    ],
)
async def test_auth_failures_end_a_fixed_token_client_but_a_provider_retries(
    exc: BaseException, static: type, provider: type, rejects: bool
):
    token = mint(time.time() + 3600)  # these clients read the real clock
    fixed = TickerClient("ws://h/ws", token=token)
    fixed._first = asyncio.get_running_loop().create_future()  # as start() has it
    err = fixed._auth_error(exc)
    assert type(err) is static and token not in str(err)
    assert fixed._refused_for_good(err) is (static is AuthenticationFailed)
    if static is AuthenticationFailed:
        assert fixed._first.exception() is err  # start() raises it: no retry loop

    async def tokens() -> str:
        return token

    renewing = TickerClient("ws://h/ws", token_provider=tokens)
    renewing._first = asyncio.get_running_loop().create_future()
    assert renewing._tokens is not None
    await renewing._tokens.current()
    err = renewing._auth_error(exc)
    assert type(err) is provider and not renewing._refused_for_good(err)
    # A refused token: the provider is asked for another before the next attempt.
    assert renewing._tokens.stale() is rejects


def test_without_a_token_a_401_says_a_token_is_needed():
    client = TickerClient("ws://h/ws")
    err = client._auth_error(handshake_error(401))
    assert isinstance(err, AuthenticationFailed) and "requires a token" in str(err)


def test_an_expired_fixed_token_says_so_without_naming_python_arguments():
    client = TickerClient("ws://h/ws", token=mint(time.time() + 3600))
    err = client._auth_error(ConnectionLost("closed", 4003))
    assert str(err) == "the token expired (close 4003); give a fresh token or a token provider"


# -- what the link makes of the server's messages ------------------------------------------------
def test_subscribed_carries_the_delayed_set_and_forbidden_symbols_are_named():
    subs = Subscriptions(["AAPL", "MSFT", "BTC"], buffer_limit=10)
    errors: list[ServerError] = []
    link = ServerLink(cast(aiohttp.ClientWebSocketResponse, None), subs, 10, 10, errors.append)

    def send(msg: dict[str, Any]) -> None:
        link.handle(orjson.dumps(msg).decode())

    send({"type": "subscribed", "symbols": ["AAPL", "BTC", "MSFT"], "delayed": ["MSFT", "NVDA"]})
    assert subs.delayed == {"MSFT"} and set(subs.symbols) == {"AAPL", "MSFT", "BTC"}
    # After a refresh that narrows the entitlements: the smaller set, then the error naming the rest.
    send({"type": "subscribed", "symbols": ["AAPL", "MSFT"], "delayed": []})
    send({"type": "error", "code": "forbidden_symbol", "message": "not entitled to BTC", "symbols": ["BTC"]})
    assert set(subs.symbols) == {"AAPL", "MSFT"} and subs.delayed == frozenset()
    assert len(errors) == 1 and isinstance(errors[0], ForbiddenSymbolError)
    assert errors[0].symbols == ["BTC"] and errors[0].code == "forbidden_symbol"
    send({"type": "subscribed", "symbols": ["AAPL", "MSFT"], "delayed": ["AAPL"]})
    subs.forget(["AAPL"])
    assert subs.delayed == frozenset()
    subs.delayed = frozenset({"MSFT"})
    subs.new_connection()
    assert subs.delayed == frozenset()


def q_entry(symbol: str, q: int, t: int) -> dict[str, Any]:
    return {"s": symbol, "p": 100.0 + q, "t": t, "q": q}


def test_a_symbol_that_moves_between_tiers_starts_again_from_the_next_snapshot():
    subs = Subscriptions(["AAPL", "MSFT"], buffer_limit=100)
    link = ServerLink(cast(aiohttp.ClientWebSocketResponse, None), subs, 10, 10, lambda err: None)

    def send(msg: dict[str, Any]) -> None:
        link.handle(orjson.dumps(msg).decode())

    def drain() -> list[tuple[str, int]]:
        out = []
        while (quote := subs.buffer.pop()) is not None:
            out.append((quote.symbol, quote.seq))
        return out

    send({"type": "subscribed", "symbols": ["AAPL", "MSFT"], "delayed": []})
    send({"type": "quotes", "data": [q_entry("AAPL", 50, 5000), q_entry("MSFT", 51, 5000)]})
    assert drain() == [("AAPL", 50), ("MSFT", 51)]
    # A refresh makes AAPL delayed: its snapshot and entries carry their original (older) q.
    send({"type": "subscribed", "symbols": ["AAPL", "MSFT"], "delayed": ["AAPL"]})
    send({"type": "snapshot", "data": [q_entry("AAPL", 20, 2000)]})
    send({"type": "quotes", "data": [q_entry("AAPL", 21, 2100), q_entry("MSFT", 51, 5000)]})
    assert drain() == [("AAPL", 20), ("AAPL", 21)]  # MSFT did not move: its repeat is still dropped
    assert subs.latest["AAPL"].seq == 21
    # The same delayed set again (a later subscribe): nothing moved, old entries stay dropped.
    send({"type": "subscribed", "symbols": ["AAPL", "MSFT"], "delayed": ["AAPL"]})
    send({"type": "quotes", "data": [q_entry("AAPL", 21, 2100)]})
    assert drain() == []
    # And back to real-time.
    send({"type": "subscribed", "symbols": ["AAPL", "MSFT"], "delayed": []})
    send({"type": "snapshot", "data": [q_entry("AAPL", 90, 9000)]})
    send({"type": "quotes", "data": [q_entry("AAPL", 90, 9000), q_entry("AAPL", 91, 9100)]})
    assert drain() == [("AAPL", 90), ("AAPL", 91)]
