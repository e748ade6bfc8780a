"""The Python client's stream options against a real server (issue 16): ``max_hz`` per symbol and its granted
``rates``, kept across a reconnect; ``fields`` and ``delta`` merged back into full quotes that equal a full
subscriber's at every q, across a reconnect and a slow reader's catch-up; ``ticker watch --max-hz``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import time
from typing import Any

from websockets.asyncio.client import connect

from tests.support.clientkit import take
from tests.support.inprocess import InProcessServer
from tests.support.serverproc import ServerProcess, scrape_async
from tests.support.timing import eventually, timeout
from tests.support.wsclient import Inbox, recv_until
from ticker.backoff import Backoff
from ticker.client import Event, EventKind, Quote, TickerClient
from ticker.client.merge import EntryMerger

FAST = Backoff(base=0.05, cap=0.5)
WINDOW = 3.0  # seconds of counting: a window is the scenario here, not a wait


async def arrivals(client: TickerClient, seconds: float) -> list[Quote]:
    """The quotes ``client`` yields during a window of ``seconds``, after the ones already waiting."""
    for _ in range(client.pending):
        await anext(client)
    got: list[Quote] = []

    async def run() -> None:
        async for q in client:
            got.append(q)

    with contextlib.suppress(TimeoutError):  # the window ended
        await asyncio.wait_for(run(), seconds)
    return got


def drop_every_connection(srv: InProcessServer) -> None:
    """The server drops each connection at once (no close handshake): its clients reconnect."""
    for conn in list(srv.node.connections):
        conn.abort()


async def test_max_hz_caps_a_symbols_rate_and_the_granted_rate_is_reported(inprocess: InProcessServer):
    # The simulated market ticks 20 times a second per symbol.
    async with TickerClient(inprocess.ws_url, ["AAPL"], max_hz=2) as client:
        await client.subscribe("MSFT", max_hz=None)
        assert client.rates == {"AAPL": 2.0} and client.max_hz == 2.0
        got = await arrivals(client, WINDOW)
        aapl = [q for q in got if q.symbol == "AAPL"]
        msft = [q for q in got if q.symbol == "MSFT"]
        # Entries at least 0.5 s apart: at most 2 a second (one more for the window's edges and arrival jitter).
        assert 3 <= len(aapl) <= 2 * WINDOW + 2, [q.seq for q in aapl]
        assert len(msft) >= 20
        assert [q.seq for q in aapl] == sorted({q.seq for q in aapl})
        # Subscribing again without max_hz lifts the limit.
        await client.subscribe("AAPL", max_hz=None)
        assert client.rates == {}
        assert len([q for q in await arrivals(client, WINDOW) if q.symbol == "AAPL"]) > 2 * WINDOW + 2


async def test_two_clients_on_one_symbol_each_get_their_own_rate(inprocess: InProcessServer):
    async with (
        TickerClient(inprocess.ws_url, ["NVDA"], max_hz=1) as slow,
        TickerClient(inprocess.ws_url, ["NVDA"], max_hz=4) as fast,
    ):
        assert (slow.rates, fast.rates) == ({"NVDA": 1.0}, {"NVDA": 4.0})
        one, four = await asyncio.gather(arrivals(slow, WINDOW), arrivals(fast, WINDOW))
        assert 1 <= len(one) <= WINDOW + 2
        assert len(one) < len(four) <= 4 * WINDOW + 2


async def test_a_reconnect_subscribes_each_symbol_again_at_its_rate(inprocess: InProcessServer):
    events: list[Event] = []
    async with TickerClient(
        inprocess.ws_url, ["AAPL"], max_hz=1, backoff=FAST, on_event=events.append
    ) as client:
        await client.subscribe("MSFT", max_hz=5)
        await client.subscribe("NVDA")  # the client's default, 1
        await client.subscribe("TSLA", max_hz=None)
        rates = {"AAPL": 1.0, "MSFT": 5.0, "NVDA": 1.0}
        assert client.rates == rates
        drop_every_connection(inprocess)
        await eventually(
            lambda: any(e.kind is EventKind.RESUMED for e in events), 10.0, "the client to resume"
        )
        assert client.connections == 2 and client.rates == rates
        assert client.symbols == {"AAPL", "MSFT", "NVDA", "TSLA"}
        await take(client, 5)


async def test_delta_and_fields_quotes_equal_a_full_subscribers_at_every_q_across_a_reconnect(
    inprocess: InProcessServer,
):
    symbols = ["AAPL", "MSFT"]
    events: list[Event] = []
    full_seen: dict[tuple[str, int], Quote] = {}
    async with (
        TickerClient(inprocess.ws_url, symbols, backoff=FAST) as full,
        TickerClient(inprocess.ws_url, symbols, delta=True, backoff=FAST, on_event=events.append) as delta,
        TickerClient(inprocess.ws_url, symbols, fields="p,b", delta=True, backoff=FAST) as narrow,
    ):
        assert (delta.delta, delta.fields, narrow.fields) == (True, None, ("p", "b"))
        for q in full.latest.values():
            full_seen[q.symbol, q.seq] = q
        got: dict[str, list[Quote]] = {"delta": [], "narrow": []}

        async def read_full() -> None:
            async for q in full:
                full_seen[q.symbol, q.seq] = q

        async def read(name: str, client: TickerClient, n: int) -> None:
            got[name].extend(client.latest.values())
            got[name].extend(await take(client, n, within=30))

        reader = asyncio.create_task(read_full())
        try:
            await asyncio.gather(read("delta", delta, 60), read("narrow", narrow, 60))
            drop_every_connection(inprocess)  # the same process: q goes on, so (s, q) names one value
            await eventually(lambda: any(e.kind is EventKind.RESUMED for e in events), 10.0, "a resume")
            await asyncio.gather(read("delta", delta, 60), read("narrow", narrow, 60))
            last = max(q.seq for q in got["delta"] if q.symbol == "AAPL")
            await eventually(lambda: full.latest["AAPL"].seq >= last, 10.0, "the full client to catch up")
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        assert delta.connections == 2 and narrow.connections == 2
        compared = 0
        for q in got["delta"]:
            if (q.symbol, q.seq) in full_seen:
                assert q == full_seen[q.symbol, q.seq]
                compared += 1
        assert compared >= 60, compared
        compared = 0
        for q in got["narrow"]:
            if (ref := full_seen.get((q.symbol, q.seq))) is not None:
                assert (q.price, q.bid, q.ts_ms) == (ref.price, ref.bid, ref.ts_ms)
                assert (q.ask, q.volume, q.change, q.open, q.prev_close, q.vwap) == (None,) * 6
                compared += 1
        assert compared >= 60, compared


async def test_set_options_at_run_time_switches_to_deltas_and_keeps_them_after_a_reconnect(
    inprocess: InProcessServer,
):
    events: list[Event] = []
    async with TickerClient(inprocess.ws_url, ["AAPL"], backoff=FAST, on_event=events.append) as client:
        await take(client, 3)
        await client.set_options(fields=["p", "a"], delta=True)
        assert (client.fields, client.delta) == (("p", "a"), True)
        assert client.latest["AAPL"].bid is None  # the snapshot under the new options replaced the value
        got = await take(client, 10)
        assert all(q.ask is not None and q.bid is None and q.volume is None for q in got)
        drop_every_connection(inprocess)
        await eventually(lambda: any(e.kind is EventKind.RESUMED for e in events), 10.0, "a resume")
        assert (client.fields, client.delta) == (("p", "a"), True)
        assert all(q.bid is None and q.ask is not None for q in await take(client, 10))
        await client.set_options(fields=None)
        assert client.fields is None and client.delta and client.latest["AAPL"].bid is not None


def small_socket(port: int) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` with a tiny receive buffer: a reader that stops falls behind fast."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    return s


async def test_a_slow_delta_reader_catches_up_with_a_snapshot_and_merges_to_the_full_quotes():
    symbols = [f"S{i}" for i in range(20)]
    args = ["--symbols", ",".join(symbols), "--sim-rate", "200", "--flush-ms", "5"]
    args += ["--slow-bytes", "16384", "--slow-timeout", "60", "--log-level", "warning"]
    query = "?symbols=" + ",".join(symbols)
    with ServerProcess(args) as srv:
        async with connect(srv.ws_url + query) as full_ws:
            full = Inbox(full_ws)
            sock = await asyncio.to_thread(small_socket, srv.port)
            async with connect(srv.ws_url + query + "&delta=1", sock=sock, max_queue=1) as slow:
                first = await recv_until(slow, lambda m: m["type"] == "snapshot")
                merger = EntryMerger(delta=True)
                merged: dict[tuple[str, int], dict[str, Any]] = {}
                for e in first["data"]:
                    merged[e["s"], e["q"]] = dict(merger.apply(e, snapshot=True) or {})
                # Stop reading until the server conflates this connection.
                await eventually(
                    lambda: _conflated(srv.url), 20.0, "the server to conflate the stalled delta reader"
                )
                catch_up = after = deltas = 0
                async with asyncio.timeout(timeout(30)):
                    while catch_up == 0 or after < 2000:
                        msg = json.loads(await slow.recv())
                        if msg["type"] not in ("snapshot", "quotes"):
                            continue
                        snapshot = msg["type"] == "snapshot"
                        catch_up += snapshot
                        for e in msg["data"]:
                            deltas += not snapshot and "pc" not in e  # the previous close did not change
                            state = merger.apply(e, snapshot=snapshot)
                            if state is not None:
                                merged[e["s"], e["q"]] = dict(state)
                                after += catch_up > 0
            stop_at = time.monotonic()
            await eventually(
                lambda: full.msgs and full.msgs[-1][0] > stop_at, 10.0, "the full reader to go on"
            )
        reference = {(e["s"], e["q"]): e for kind in ("snapshot", "quotes") for e in full.entries(kind)}
        common = [k for k in merged if k in reference]
        assert deltas > 0 and len(common) >= 500, (deltas, len(common))
        for k in common:
            assert merged[k] == reference[k], k


async def _conflated(url: str) -> bool:
    return (await scrape_async(url)).get("ticker_updates_conflated_total", 0) > 0


async def test_ticker_watch_max_hz_paces_its_lines(server: ServerProcess):
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ticker",
        "watch",
        "AAPL",
        "--url",
        server.ws_url,
        "--json",
        "--count",
        "4",
        "--max-hz",
        "2",
        "--fields",
        "p,b",
        "--delta",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout(30))
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert len(lines) == 4
    assert all({"s", "p", "t", "q"} <= q.keys() <= {"s", "p", "b", "t", "q"} for q in lines)
    # The snapshot, then three entries each at least 0.5 s after the one before, all sent after the start.
    assert elapsed >= 1.5, elapsed
