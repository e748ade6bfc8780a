"""The Python client's bar subscriptions against real servers (processes where a restart is the point, else one in
the test's event loop): the history then live bars, subscribed again after a restart, refusals as exceptions."""

from __future__ import annotations

import asyncio
import re
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.inprocess import serve_in_process
from tests.support.serverproc import ServerProcess
from tests.support.timing import eventually, timeout
from tests.support.tokens import SECRET, mint
from ticker.auth.options import AuthOptions
from ticker.backoff import Backoff
from ticker.client import (
    BadRequestError,
    Bar,
    BarSubscription,
    Event,
    EventKind,
    ForbiddenSymbolError,
    TickerClient,
    TooManyBarSubscriptionsError,
    UnknownSymbolError,
)

FAST = Backoff(base=0.05, cap=0.5)
ARGS = ["--sim-rate", "50", "--seed", "7", "--log-level", "warning"]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "clients.md"


def docs_example(url: str) -> str:
    """The example of docs/clients.md's Bars section as a script, pointed at ``url``."""
    section = DOCS.read_text().split("### Bars", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, "the Bars section of docs/clients.md has no python example"
    assert "ws://127.0.0.1:8888/ws" in block.group(1)
    body = textwrap.indent(block.group(1).replace("ws://127.0.0.1:8888/ws", url), "    ")
    return f"import asyncio\nfrom ticker.client import TickerClient\n\nasync def main():\n{body}\nasyncio.run(main())\n"


async def take(sub: BarSubscription, n: int, within: float = 10.0) -> list[Bar]:
    """The next ``n`` bars of ``sub``, within ``within`` seconds (scaled)."""
    out: list[Bar] = []
    async with asyncio.timeout(timeout(within)):
        async for b in sub:
            out.append(b)
            if len(out) == n:
                break
    return out


def well_formed(bars: list[Bar], length: int) -> None:
    ts = [b.t for b in bars]
    assert ts == sorted(set(ts)), ts  # upserted: one bar per t, oldest first
    assert all(t % length == 0 for t in ts)
    assert all(b.l <= min(b.o, b.c) and max(b.o, b.c) <= b.h for b in bars), bars


async def test_history_then_live_bars_and_unsubscribe():
    srv = await asyncio.to_thread(ServerProcess(ARGS).start)
    try:
        async with TickerClient(srv.ws_url, backoff=FAST) as client:
            sub = await client.subscribe_bars("aapl", "1m", history=50)
            assert (sub.symbol, sub.interval, sub.delayed) == ("AAPL", "1m", False)
            history = sub.bars
            assert 1 <= len(history) <= 50  # the simulated market's session history, in before the return
            well_formed(history, 60_000)
            assert await take(sub, len(history)) == history  # handed out first, as they are
            live = await take(sub, 5)  # the current minute moving at 50 ticks/s
            assert all(b.t >= history[-1].t for b in live)
            now = time.time() * 1000
            assert now - 120_000 < live[-1].t <= now
            assert sub.bars[-1] == live[-1]  # upserted by t into the series
            well_formed(sub.bars, 60_000)
            assert client.bar_subscriptions == {("AAPL", "1m"): sub}
            assert client.symbols == frozenset()  # bars do not subscribe the quotes

            fast = await client.subscribe_bars("MSFT", "1s", history=0)
            assert fast.loads == 1 and len(await take(fast, 3)) == 3  # no history: live bars only
            await client.unsubscribe_bars("MSFT", "1s")
            assert not fast.active and [b async for b in fast] == []
            assert set(client.bar_subscriptions) == {("AAPL", "1m")}
            assert sub.active
    finally:
        await asyncio.to_thread(srv.stop)


async def test_bars_are_subscribed_again_after_a_server_restart():
    srv = await asyncio.to_thread(ServerProcess(ARGS).start)
    port = srv.port
    srv2: ServerProcess | None = None
    events: list[Event] = []
    try:
        async with TickerClient(srv.ws_url, backoff=FAST, on_event=events.append) as client:
            sub = await client.subscribe_bars("AAPL", "1s", history=100)
            minute = await client.subscribe_bars("AAPL", "1m", history=30)
            await take(sub, len(sub.bars) + 3)
            await asyncio.to_thread(srv.stop)
            stopped = time.time() * 1000
            srv2 = await asyncio.to_thread(ServerProcess(ARGS, port=port).start)
            await eventually(lambda: EventKind.RESUMED in [e.kind for e in events], 15, "the resumed event")
            assert sub.loads == 2 and minute.loads == 2 and sub.active and minute.active
            assert not [e for e in events if e.kind is EventKind.ERROR]
            # The new process's bars come, without any user code: its history, then live ones (bars the old
            # process sent just before it stopped may still be queued ahead of them).
            async with asyncio.timeout(timeout(10.0)):
                async for b in sub:
                    if b.t > stopped:
                        break
            well_formed(sub.bars, 1000)
            well_formed(minute.bars, 60_000)
            assert minute.bars[-1].t > stopped - 60_000
            assert client.connections == 2
    finally:
        await asyncio.to_thread(srv.stop)
        if srv2 is not None:
            await asyncio.to_thread(srv2.stop)


async def test_refusals_raise_and_leave_nothing_held():
    async with (
        serve_in_process(sim_rate=20.0, max_bar_subscriptions=1) as srv,
        TickerClient(srv.ws_url, backoff=FAST) as client,
    ):
        with pytest.raises(UnknownSymbolError) as unknown:
            await client.subscribe_bars("APPL", "1m")
        assert unknown.value.symbols == ["APPL"] and "AAPL" in unknown.value.suggestions["APPL"]
        with pytest.raises(BadRequestError):
            await client.subscribe_bars("AAPL", "2m")  # checked by the client: nothing sent
        held = await client.subscribe_bars("AAPL", "5m", history=1)
        with pytest.raises(TooManyBarSubscriptionsError) as cap:
            await client.subscribe_bars("MSFT", "1m")
        assert "limit is 1" in cap.value.message
        assert client.bar_subscriptions == {("AAPL", "5m"): held}
        await client.unsubscribe_bars("AAPL", "5m")
        again = await client.subscribe_bars("MSFT", "1m", history=1)  # the cap freed up
        assert again.active and len(again.bars) == 1


async def test_entitlements_forbidden_and_delayed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TICKER_JWT_SECRET", SECRET)
    access = AuthOptions(auth="jwt", delay=2.0)
    async with serve_in_process(symbols=["AAPL", "MSFT", "NVDA"], sim_rate=20.0, access=access) as srv:
        token = mint(sub="late", realtime=["MSFT"], delayed=["AAPL"])
        async with TickerClient(srv.ws_url, token=token, backoff=FAST) as client:
            with pytest.raises(ForbiddenSymbolError) as forbidden:
                await client.subscribe_bars("NVDA", "1m")
            assert forbidden.value.symbols == ["NVDA"] and client.bar_subscriptions == {}
            delayed = await client.subscribe_bars("AAPL", "1s", history=100)
            assert delayed.delayed
            horizon = time.time() * 1000 - 2000
            assert all(b.t + 1000 <= horizon for b in delayed.bars)
            live = await client.subscribe_bars("MSFT", "1s", history=10)
            assert not live.delayed


async def test_the_documented_example_prints_the_history_then_live_bars():
    srv = await asyncio.to_thread(ServerProcess(ARGS).start)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", docs_example(srv.ws_url), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        lines: list[list[float]] = []
        recent = (time.time() * 1000 // 60_000 - 1) * 60_000  # the previous minute's start
        async with asyncio.timeout(timeout(20)):
            while sum(f[0] >= recent for f in lines) < 5:  # live updates of the current minute
                line = await proc.stdout.readline()
                assert line, "the example ended"
                lines.append([float(x) for x in line.split()])
        assert all(len(f) == 6 and f[0] % 60_000 == 0 for f in lines)
        first_recent = next(i for i, f in enumerate(lines) if f[0] >= recent)
        ts = [f[0] for f in lines[:first_recent]]
        assert ts == sorted(set(ts)) and len(ts) >= 2  # the session's history first, oldest first
    finally:
        proc.kill()
        await proc.wait()
        await asyncio.to_thread(srv.stop)
