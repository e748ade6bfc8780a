"""The Python client's symbol states and unknown symbols against real servers: the simulated market's
directory refuses a typo with a suggestion, and a replay that ends turns its symbols ``down``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.clientkit import take
from tests.support.serverproc import ServerProcess, serving
from tests.support.symbolkit import knows, write_recording
from tests.support.timing import eventually
from ticker.client import Event, EventKind, State, SymbolStatus, TickerClient, UnknownSymbolError

LIVE = SymbolStatus("live")


async def directory_loaded(srv: ServerProcess, symbol: str) -> None:
    await eventually(lambda: asyncio.to_thread(knows, srv.url, symbol), 15, f"the directory to know {symbol}")


async def test_unknown_symbol_raises_with_a_suggestion_and_the_known_ones_are_subscribed(
    server: ServerProcess,
):
    await directory_loaded(server, "AAPL")
    events: list[Event] = []
    async with TickerClient(server.ws_url, ["MSFT"], on_event=events.append) as client:
        with pytest.raises(UnknownSymbolError) as info:
            await client.subscribe("APPL", "NVDA")
        err = info.value
        assert err.code == "unknown_symbol" and err.symbols == ["APPL"]
        assert "AAPL" in err.suggestions["APPL"]
        assert "No symbol APPL — did you mean AAPL (Apple Inc.)" in str(err)
        assert client.symbols == {"MSFT", "NVDA"}  # the known symbol of the same call is subscribed
        assert "NVDA" in client.latest and client.states == {"MSFT": LIVE, "NVDA": LIVE}
        assert not [e for e in events if e.kind is EventKind.ERROR]  # raised, not also an event
        assert await client.subscribe("AAPL") == {"AAPL", "MSFT", "NVDA"}  # the connection is fine
    # In the initial set, an unknown symbol fails start() like any refused subscription.
    client = TickerClient(server.ws_url, ["AAPL", "ZZZQX"])
    with pytest.raises(UnknownSymbolError) as info:
        await client.start()
    assert info.value.symbols == ["ZZZQX"] and client.state is State.CLOSED


async def test_a_replay_that_ends_turns_its_symbols_down_with_status_events(tmp_path: Path):
    recording = write_recording(tmp_path / "short.jsonl", ["AAPL", "MSFT"], seconds=5)
    async with serving("--feed", "replay", "--replay-file", str(recording), "--log-level", "warning") as srv:
        await directory_loaded(srv, "AAPL")
        events: list[Event] = []
        async with TickerClient(srv.ws_url, ["AAPL", "MSFT"], on_event=events.append) as client:
            await take(client, 6)  # the replay runs: quotes flow, and nothing said otherwise
            assert client.states == {"AAPL": LIVE, "MSFT": LIVE}
            with pytest.raises(UnknownSymbolError) as info:  # the replay knows its recording's symbols only
                await client.subscribe("NVDA")
            assert info.value.symbols == ["NVDA"] and client.symbols == {"AAPL", "MSFT"}

            def both_down() -> dict[str | None, SymbolStatus | None]:
                last = {e.symbol: e.status for e in events if e.kind is EventKind.STATUS}
                done = all((st := last.get(s)) is not None and st.state == "down" for s in ("AAPL", "MSFT"))
                return last if done else {}

            last = await eventually(both_down, 20, "status events saying AAPL and MSFT are down")
            for sym in ("AAPL", "MSFT"):
                st = client.states[sym]
                assert st.state == "down" and st.reason and last[sym] == st
            await client.unsubscribe("MSFT")
            assert client.states == {"AAPL": client.states["AAPL"]} and "MSFT" not in client.states
