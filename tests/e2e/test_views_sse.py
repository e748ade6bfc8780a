"""Rates, fields and deltas (issue 16) on Server-Sent Events against real server processes: ``/sse?fields=``,
``?delta=1`` and ``?max_hz=`` merged into a full WebSocket subscriber's quotes at every ``q``, bad values
answered 400 with the JSON error body, and a stalled delta reader's catch-up as a ``snapshot`` event. Every
event is checked against the server schema of docs/protocol.md (the 400 bodies against the HTTP one)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from tests.support.schemas import http_schema, protocol_schemas
from tests.support.serverproc import ServerProcess, scrape
from tests.support.timing import timeout
from tests.support.viewkit import (
    PolledSse,
    PolledWs,
    arrivals,
    catch_up,
    merged_mismatches,
    of,
    poll_all,
    throttle_violations,
    write_flip_recording,
)

SERVER = jsonschema.Draft202012Validator(protocol_schemas()[1])
HTTP = jsonschema.Draft202012Validator(http_schema())


def valid(msg: dict[str, Any]) -> None:
    SERVER.validate(msg)


@pytest.fixture(scope="module")
def flip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A replayed market of FLIP (its bid comes and goes) and HOLD (mostly unchanged), 20 quotes a second each."""
    path = write_flip_recording(tmp_path_factory.mktemp("views") / "flip.jsonl")
    args = ["--feed", "replay", "--replay-file", str(path), "--replay-loop", "--log-level", "warning"]
    with ServerProcess(args) as srv:
        yield srv


def test_fields_delta_and_max_hz_in_the_sse_url_merge_into_the_full_quotes_at_every_q(flip: ServerProcess):
    with (
        PolledWs(flip.port, "/ws?symbols=FLIP,HOLD", on_message=valid) as full,
        PolledSse(flip.port, "/sse?symbols=FLIP,HOLD&fields=p,b&delta=1", on_message=valid) as narrow,
        PolledSse(flip.port, "/sse?symbols=FLIP&fields=p&delta=1&max_hz=2", on_message=valid) as slow,
    ):
        poll_all([full, narrow, slow], 2.5)
        reference = catch_up(full, [narrow, slow])
    for client in (narrow, slow):  # the event's name is the message's type
        assert all(name == m["type"] for _, name, m in client.events)
    assert of(narrow, "subscribed") == []  # no rate, no token: the stream opens with its snapshot
    assert [m["rates"] for m in of(slow, "subscribed")] == [{"FLIP": 2.0}]
    assert all(e.keys() <= {"s", "t", "q", "p", "b"} for _, _, e in narrow.entries())
    assert all(e.keys() <= {"s", "t", "q", "p"} for _, _, e in slow.entries())
    compared, bad = merged_mismatches(narrow, reference, ["p", "b"])
    assert bad == [] and compared >= 40, (compared, bad[:5])
    compared, bad = merged_mismatches(slow, reference, ["p"])
    assert bad == [] and compared >= 3, (compared, bad[:5])
    quotes = [e for _, kind, e in narrow.entries() if kind == "quotes"]
    assert any(e["s"] == "FLIP" and "b" in e and e["b"] is None for e in quotes)  # the bid went away: null
    assert any(e["s"] == "HOLD" and e.keys() == {"s", "t", "q"} for e in quotes)  # nothing else changed
    states = arrivals(slow, "FLIP")
    assert len(states) >= 3 and throttle_violations(states, 0.5) == [], states


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("fields=p,nope", "unknown fields: nope"),
        ("fields=", "fields"),
        ("max_hz=0.01", "max_hz"),
        ("max_hz=often", "max_hz"),
        ("delta=maybe", "delta"),
    ],
)
async def test_bad_rates_fields_and_delta_in_the_sse_url_are_400_with_a_json_error(
    flip: ServerProcess, query: str, words: str
):
    async with httpx.AsyncClient(timeout=timeout(5)) as http:
        r = await http.get(f"{flip.url}/sse?symbols=FLIP&{query}")
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    HTTP.validate(body)
    assert body["error"]["code"] == "bad_request" and words in body["error"]["message"], body


def test_a_stalled_sse_delta_reader_resumes_with_a_snapshot_event_and_merges_into_the_full_quotes():
    # 80 symbols at 200 ticks a second: the stalled reader's deltas fill the socket buffers (megabytes on
    # loopback) in a few seconds; the full reader, which must keep up, takes 15 only.
    symbols = [f"S{i}" for i in range(80)]
    compared_symbols = symbols[:15]
    args = ["--symbols", ",".join(symbols), "--sim-rate", "200", "--flush-ms", "5", "--seed", "4"]
    args += ["--slow-bytes", "16384", "--slow-timeout", "60", "--log-level", "warning"]
    seen = 0

    def sampled(msg: dict[str, Any]) -> None:  # checking every entry costs too much here: every 25th quotes
        nonlocal seen
        seen += 1
        if msg["type"] != "quotes" or seen % 25 == 0:
            valid(msg)

    def after_catch_up() -> int:
        """Entries of ``quotes`` events after the catch-up ``snapshot`` event (the second)."""
        at = [i for i, (_, m) in enumerate(slow.msgs) if m["type"] == "snapshot"][1:2]
        return sum(len(m["data"]) for _, m in slow.msgs[at[0] :] if m["type"] == "quotes") if at else 0

    with (
        ServerProcess(args) as srv,
        PolledWs(srv.port, "/ws?symbols=" + ",".join(compared_symbols), on_message=sampled) as full,
        PolledSse(
            srv.port, "/sse?delta=1&symbols=" + ",".join(symbols), rcvbuf=4096, on_message=sampled
        ) as slow,
    ):
        # Stop reading the event stream (the full reader goes on) until the server conflates it.
        deadline = time.monotonic() + timeout(20)
        while scrape(srv.url).get("ticker_updates_conflated_total", 0) == 0:
            assert time.monotonic() < deadline, "the server did not conflate the stalled reader"
            poll_all([full], 0.1)
        end = time.monotonic() + timeout(20)
        while after_catch_up() < 5000:
            assert time.monotonic() < end, (
                f"no catch-up snapshot, or few entries after it ({after_catch_up()})"
            )
            poll_all([full, slow], 0.05)
        reference = catch_up(full, [slow], compared_symbols)
    assert all(name == m["type"] for _, name, m in slow.events)
    catch_up_at = [i for i, (_, m) in enumerate(slow.msgs) if m["type"] == "snapshot"][1]
    # Every state merged is compared where the full reader got that q (it may have been conflated too).
    compared, bad = merged_mismatches(slow, reference, None, False, compared_symbols, catch_up_at)
    assert bad == [] and compared >= 300, (compared, bad[:5])  # after the catch-up: about 5000 * 15 / 80
    assert any("pc" not in e for _, kind, e in slow.entries() if kind == "quotes")  # deltas
