"""``ticker serve --workers 2``: one feed process, one market; every worker serves the same update alike."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

from tests.support.fakes.finnhub import FakeFinnhub
from tests.support.serverproc import ServerProcess, serving
from tests.support.timing import eventually
from tests.support.workerskit import (
    WORKER_HEADER,
    epochs,
    feed_pid,
    get_json,
    one_entry_per_update,
    one_per_worker,
    ops_ports,
)
from tests.support.wsclient import Inbox


def linked(srv: ServerProcess, times: int = 2) -> bool:
    return srv.output().count("linked to the feed process") >= times


def same_updates(inboxes: dict[int, Inbox]) -> set[tuple[str, int]]:
    """The ``(symbol, q)`` both connections received; each maps to one entry, the same on both."""
    seen = {w: one_entry_per_update(i.entries("snapshot") + i.entries()) for w, i in inboxes.items()}
    a, b = seen.values()
    common = a.keys() & b.keys()
    for key in common:
        assert a[key] == b[key], f"{key}: {a[key]} on one worker, {b[key]} on the other"
    return common


def never_back(inbox: Inbox) -> None:
    """On one connection, each symbol's ``q`` never decreases (snapshots and quotes, in arrival order)."""
    last: dict[str, int] = {}
    for _, msg in inbox.msgs:
        if msg["type"] in ("snapshot", "quotes"):
            for e in msg["data"]:
                assert e["q"] >= last.get(e["s"], 0), f"{e['s']} went back to q={e['q']} from {last[e['s']]}"
                last[e["s"]] = e["q"]


async def close_all(inboxes: dict[int, Inbox]) -> None:
    for inbox in inboxes.values():
        with contextlib.suppress(Exception):
            await inbox.ws.close()


async def test_both_workers_serve_the_same_simulated_market() -> None:
    async with serving("--workers", "2", "--symbols", "AAPL,MSFT,NVDA", "--sim-rate", "5") as srv:
        await eventually(lambda: linked(srv), 15, "both workers linked to the feed process")
        [epoch] = epochs(srv)
        inboxes = {
            w: Inbox(ws) for w, ws in (await one_per_worker(srv.ws_url + "?symbols=AAPL,MSFT,NVDA")).items()
        }
        try:
            await eventually(
                lambda: all(len(i.entries()) >= 30 for i in inboxes.values()), 15, "quotes on both"
            )
            for inbox in inboxes.values():
                snapshot = inbox.since(0, "snapshot")[0]
                assert snapshot["e"] == epoch  # the feed process's epoch, on every worker
                never_back(inbox)
            assert len(same_updates(inboxes)) >= 10
        finally:
            await close_all(inboxes)


async def test_rest_never_goes_back_on_a_worker_and_gives_one_price_per_update_on_both() -> None:
    async with serving("--workers", "2", "--symbols", "AAPL", "--sim-rate", "2") as srv:
        await eventually(lambda: linked(srv), 15, "both workers linked to the feed process")
        valued: set[str] = set()  # the workers that answered with a value (the catch-up follows the link)

        async def both_valued() -> bool:
            status, headers, body = await asyncio.to_thread(get_json, srv.port, "/api/quotes?symbols=AAPL")
            if status == 200 and body["data"]:
                valued.add(headers[WORKER_HEADER])
            return valued == {"0", "1"}

        await eventually(both_valued, 15, "a value of AAPL on both workers")
        answers: list[tuple[str, dict[str, Any]]] = []
        for _ in range(40):  # each on a new connection: the kernel picks the worker
            status, headers, body = await asyncio.to_thread(get_json, srv.port, "/api/quotes?symbols=AAPL")
            assert status == 200
            answers.append((headers[WORKER_HEADER], body["data"][0]))
            await asyncio.sleep(0.05)  # pacing: the answers span a few updates
        assert {w for w, _ in answers} == {"0", "1"}
        # Each worker never goes back; across workers one may be a loop pass behind the other at an update,
        # so only the numbering is compared: the same q is the same update everywhere.
        for worker in ("0", "1"):
            qs = [e["q"] for w, e in answers if w == worker]
            assert qs == sorted(qs), (worker, qs)
        assert len({e["q"] for _, e in answers}) >= 2
        one_entry_per_update([e for _, e in answers])


async def test_a_provider_sees_one_connection_and_both_workers_relay_its_trades_alike() -> None:
    fake = FakeFinnhub()
    await fake.start()
    try:
        args = ("--workers", "2", "--feed", "finnhub", "--feed-url", fake.url)
        async with serving(*args, env={"FINNHUB_TOKEN": fake.token}) as srv:
            await eventually(lambda: linked(srv), 15, "both workers linked to the feed process")
            inboxes = {w: Inbox(ws) for w, ws in (await one_per_worker(srv.ws_url + "?symbols=AAPL")).items()}
            try:
                await fake.wait_for(lambda: fake.symbols() == {"AAPL"}, 10, "AAPL subscribed upstream")
                price = 100.0

                async def traded() -> bool:
                    nonlocal price
                    price = round(price + 0.01, 2)
                    await fake.trade("AAPL", price)
                    return all(len(i.entries()) >= 5 for i in inboxes.values())

                await eventually(traded, 15, "trades on both workers")
                assert len(same_updates(inboxes)) >= 3
                assert fake.connects == 1 and len(fake.conns) == 1  # one upstream connection for the host
            finally:
                await close_all(inboxes)
    finally:
        await fake.close()


async def test_a_killed_feed_process_is_restarted_and_clients_stay_connected() -> None:
    args = ("--workers", "2", "--metrics-port", "0", "--symbols", "AAPL,MSFT", "--sim-rate", "5")
    async with serving(*args) as srv:
        await eventually(lambda: linked(srv) and len(ops_ports(srv)) == 2, 15, "workers linked, ops ports")
        ports = ops_ports(srv)
        [first] = epochs(srv)
        inboxes = {
            w: Inbox(ws) for w, ws in (await one_per_worker(srv.ws_url + "?symbols=AAPL,MSFT")).items()
        }
        try:
            await eventually(
                lambda: all(len(i.entries()) >= 5 for i in inboxes.values()), 15, "quotes on both"
            )
            assert srv.proc is not None
            supervisor = srv.proc.pid
            os.kill(supervisor, signal.SIGSTOP)  # it cannot restart the feed process before we have looked
            try:
                os.kill(feed_pid(srv), signal.SIGKILL)
                for port in ports.values():

                    async def not_ready(port: int = port) -> dict[str, Any] | None:
                        status, _, body = await asyncio.to_thread(get_json, port, "/readyz")
                        return body if status == 503 else None

                    body = await eventually(not_ready, 10, "a worker not ready")
                    assert "no link to the feed process" in body["reason"], body
            finally:
                os.kill(supervisor, signal.SIGCONT)
            await eventually(lambda: len(epochs(srv)) == 2, 15, "the feed process restarted")
            second = epochs(srv)[-1]
            assert second != first and "was killed by SIGKILL; restarting it" in srv.output()

            def resynced() -> bool:
                return all(any(s["e"] == second for s in i.since(0, "snapshot")) for i in inboxes.values())

            await eventually(resynced, 15, "a snapshot under the new epoch on every connection")
            count = {w: len(i.entries()) for w, i in inboxes.items()}
            await eventually(
                lambda: all(len(i.entries()) >= count[w] + 5 for w, i in inboxes.items()), 15, "quotes again"
            )
            for port in ports.values():

                def ready(port: int = port) -> bool:
                    return get_json(port, "/readyz")[0] == 200

                await eventually(ready, 10, "ready again")
            for inbox in inboxes.values():
                assert not inbox.closed
                never_back(inbox)  # the new feed process numbers above what the workers served
            same_updates(inboxes)
        finally:
            await close_all(inboxes)
