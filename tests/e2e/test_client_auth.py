"""The Python client and ``ticker watch`` with tokens, against a real ``ticker serve --auth jwt`` process:
header auth, refused tokens, renewal over the live socket, entitlements, the delayed tier, the user cap."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from tests.support.clientkit import take
from tests.support.serverproc import ServerProcess
from tests.support.timing import eventually, timeout
from ticker.backoff import Backoff
from ticker.client import (
    AuthenticationFailed,
    ConnectError,
    Event,
    EventKind,
    ForbiddenSymbolError,
    Quote,
    TickerClient,
    TooManyConnectionsError,
)

SECRET = "e2e-client-auth-secret-0123456789abcdef"
METRICS_TOKEN = "e2e-metrics-token"
DELAY = 2  # --delay of the server: seconds by which delayed symbols lag
FAST = Backoff(base=0.05, cap=0.5)
WATCH = [sys.executable, "-m", "ticker", "watch"]


def mint(sub: str = "alice", ttl: float = 600, key: str = SECRET, **claims: Any) -> str:
    """An HS256 token for ``sub`` living ``ttl`` seconds; ``claims`` adds e.g. ``ticker={...}``."""
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + ttl, **claims}, key, algorithm="HS256")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    env = {"TICKER_JWT_SECRET": SECRET, "TICKER_METRICS_TOKEN": METRICS_TOKEN}
    args = ["--host", "127.0.0.1", "--auth", "jwt", "--delay", str(DELAY)]
    with ServerProcess([*args, "--sim-rate", "20", "--seed", "7", "--log-level", "warning"], env=env) as srv:
        yield srv


def opened(server: ServerProcess) -> float:
    """``ticker_connections_opened_total`` of the WebSocket transport (``/metrics`` with the metrics token)."""
    req = urllib.request.Request(
        server.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=timeout(5)) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith('ticker_connections_opened_total{transport="ws"}'):
            return float(line.rpartition(" ")[2])
    return 0.0


async def test_a_header_token_connects_without_an_extra_round_trip(server: ServerProcess):
    async with TickerClient(server.ws_url, ["AAPL", "MSFT"], token=mint()) as client:
        quotes = await take(client, 6)
        assert {q.symbol for q in quotes} <= {"AAPL", "MSFT"}
        assert client.connections == 1 and client.delayed == frozenset()


async def test_delayed_symbols_are_reported(server: ServerProcess):
    token = mint("bob", ticker={"realtime": ["AAPL"], "delayed": ["*"]})
    async with TickerClient(server.ws_url, ["AAPL", "MSFT"], token=token) as client:
        assert client.delayed == {"MSFT"}
        quotes = await take(client, 4, within=10 + DELAY)
        assert {q.symbol for q in quotes} <= {"AAPL", "MSFT"}
        await client.subscribe("NVDA")
        assert client.delayed == {"MSFT", "NVDA"}


@pytest.mark.parametrize(
    ("token", "words"),
    [
        (mint(key="not-the-server-secret-0123456789abcdef"), "refused the token (HTTP 401)"),
        (mint(ttl=-60), "refused the token (HTTP 401)"),
        (None, "requires a token"),
    ],
)
async def test_a_refused_token_fails_start_at_once_without_retrying(
    server: ServerProcess, token: str | None, words: str
):
    events: list[Event] = []
    client = TickerClient(
        server.ws_url, ["AAPL"], token=token, connect_timeout=30, backoff=FAST, on_event=events.append
    )
    began = time.monotonic()
    with pytest.raises(AuthenticationFailed, match=words.replace("(", r"\(").replace(")", r"\)")) as info:
        await client.start()
    assert time.monotonic() - began < timeout(5)  # far below connect_timeout: no retry loop
    assert not any(e.kind is EventKind.RECONNECTING for e in events)
    assert token is None or token not in str(info.value)


async def test_forbidden_symbols_raise_like_invalid_ones(server: ServerProcess):
    token = mint("carol", ticker={"realtime": ["AAPL", "MSFT"]})
    async with TickerClient(server.ws_url, ["AAPL"], token=token) as client:
        with pytest.raises(ForbiddenSymbolError) as info:
            await client.subscribe("NVDA", "MSFT")
        assert info.value.symbols == ["NVDA"] and info.value.code == "forbidden_symbol"
        assert client.symbols == {"AAPL", "MSFT"}  # the allowed part of the request was applied
    with pytest.raises(ForbiddenSymbolError):
        await TickerClient(server.ws_url, ["AAPL", "NVDA"], token=token).start()


async def test_a_provider_keeps_one_connection_alive_across_token_expiries(server: ServerProcess):
    ttl = 6
    calls: list[float] = []

    async def provider() -> str:
        calls.append(time.time())
        return mint("dave", ttl=ttl)

    events: list[Event] = []
    before = opened(server)
    async with TickerClient(
        server.ws_url, ["AAPL", "MSFT"], token_provider=provider, on_event=events.append
    ) as client:
        first_exp = int(calls[0]) + ttl
        # Past the expiry of the first token and of a later one: the server would have closed with 4003.
        await eventually(lambda: time.time() > first_exp + ttl + 1, ttl * 3, "two token lifetimes")
        await take(client, 3)  # still streaming
        assert len(calls) >= 3
        assert client.connections == 1
        assert not [e for e in events if e.kind in (EventKind.DISCONNECTED, EventKind.ERROR)], events
    assert opened(server) - before == 1


async def test_a_refresh_that_narrows_entitlements_drops_symbols(server: ServerProcess):
    allowed = ["AAPL", "MSFT"]

    async def provider() -> str:
        return mint("erin", ttl=8, ticker={"realtime": list(allowed)})

    events: list[Event] = []
    async with TickerClient(
        server.ws_url, ["AAPL", "MSFT"], token_provider=provider, on_event=events.append
    ) as client:
        allowed.remove("MSFT")  # the next token (renewed about 3 s from now) no longer covers MSFT
        error = await eventually(
            lambda: next((e.error for e in events if e.kind is EventKind.ERROR), None), 15, "forbidden_symbol"
        )
        assert isinstance(error, ForbiddenSymbolError) and error.symbols == ["MSFT"]
        assert client.symbols == {"AAPL"} and client.connections == 1
        assert all(q.symbol == "AAPL" for q in await take(client, 3))


async def test_a_symbol_moved_to_the_delayed_tier_streams_its_older_quotes_at_once(server: ServerProcess):
    """Delayed entries keep their original ``q``, below the real-time ones the client applied: after the
    move the client must take the snapshot and what follows, not drop them for ``--delay`` seconds."""
    witness_token = mint("ivan", ticker={"realtime": [], "delayed": ["AAPL"]})
    async with TickerClient(server.ws_url, ["AAPL"], token=witness_token) as witness:
        assert witness.delayed == {"AAPL"}
        await take(witness, 1, within=10 + DELAY)  # the server's delay line now holds AAPL's past values
        calls = 0

        async def provider() -> str:
            nonlocal calls
            calls += 1
            if calls == 1:  # real-time for everything, renewed about 3 s from now
                return mint("judy", ttl=8)
            return mint("judy", ticker={"realtime": [], "delayed": ["*"]})

        seen: list[tuple[float, Quote, float]] = []  # (arrival, quote, its age in s at arrival)

        async def follow(client: TickerClient) -> None:
            async for q in client:
                seen.append((time.monotonic(), q, time.time() - q.ts_ms / 1000))
                if sum(1 for _, _, age in seen if age >= DELAY - 0.05) == 3:
                    return

        async with TickerClient(server.ws_url, ["AAPL"], token_provider=provider) as client:
            assert client.delayed == frozenset()
            await asyncio.wait_for(follow(client), timeout(20))
            assert client.delayed == {"AAPL"} and client.connections == 1 and calls == 2
    first = next(i for i, (_, _, age) in enumerate(seen) if age >= DELAY - 0.05)
    realtime = seen[:first]
    assert realtime and all(age < DELAY / 2 for _, _, age in realtime)
    moved_at, snapshot, _ = seen[first]
    # The first delayed quote is older than real-time ones already yielded: it was not dropped ...
    assert snapshot.seq <= max(q.seq for _, q, _ in realtime)
    # ... and it came at the move, not after --delay seconds of silence.
    assert moved_at - realtime[-1][0] < DELAY * 0.75
    assert all(age >= DELAY - 0.05 for _, _, age in seen[first:])  # delayed from then on
    seqs = [q.seq for _, q, _ in seen[first:]]
    assert seqs == sorted(seqs)


async def test_a_fixed_token_that_expires_ends_the_iteration_with_authentication_failed(
    server: ServerProcess,
):
    async with TickerClient(server.ws_url, ["AAPL"], token=mint("frank", ttl=3), backoff=FAST) as client:
        with pytest.raises(AuthenticationFailed, match="4003"):
            await take(client, 10**9, within=15)
        assert client.connections == 1


async def test_over_the_user_cap_is_too_many_connections(server: ServerProcess):
    token = mint("grace", ticker={"realtime": ["*"], "max_connections": 1})
    async with TickerClient(server.ws_url, ["AAPL"], token=token):
        events: list[Event] = []
        second = TickerClient(
            server.ws_url, ["AAPL"], token=token, connect_timeout=1.5, on_event=events.append
        )
        with pytest.raises(ConnectError, match="too many connections for this user"):
            await second.start()
        assert any(isinstance(e.error, TooManyConnectionsError) for e in events)


def test_watch_with_a_token_prints_quotes_and_marks_delayed_ones(server: ServerProcess):
    token = mint("heidi", ticker={"realtime": ["AAPL"], "delayed": ["MSFT"]})
    for how in (["--token", token], []):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TICKER_")}
        if not how:
            env["TICKER_TOKEN"] = token
        proc = subprocess.run(
            # 100 lines: AAPL ticks 20 times a second, and on a fresh server delayed MSFT comes only after
            # --delay seconds (2 s: 40 lines of AAPL)
            [*WATCH, "AAPL", "MSFT", "--url", server.ws_url, "--json", "--count", "100", *how],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout(30),
        )
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        assert len(lines) == 100
        assert {q["s"] for q in lines} == {"AAPL", "MSFT"}
        assert all(q.get("delayed") is (True if q["s"] == "MSFT" else None) for q in lines)
        assert token not in proc.stderr


def test_watch_with_a_refused_token_exits_1_at_once(server: ServerProcess):
    began = time.monotonic()
    proc = subprocess.run(
        [*WATCH, "AAPL", "--url", server.ws_url, "--json", "--token", mint(ttl=-60)],
        capture_output=True,
        text=True,
        timeout=timeout(30),
    )
    assert proc.returncode == 1 and "refused the token (HTTP 401)" in proc.stderr, proc.stderr
    assert time.monotonic() - began < timeout(8)  # not --connect-timeout's retries
    assert "Traceback" not in proc.stderr and proc.stdout == ""
