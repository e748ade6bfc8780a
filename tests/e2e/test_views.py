"""Rates, fields and deltas (issue 16) on WebSocket against real server processes: ``max_hz`` spacing and
latest values (against a full-rate subscriber), rates per subscriber, a token's cap, ``?fields=``/``?delta=1``
and the ``options`` op merged into the full quotes at every ``q``, bad values, a stalled delta reader's
catch-up, and the ``ticker_throttled_subscriptions`` gauge. Every message received is checked against the
server schema of docs/protocol.md (one ``quotes`` message in 25 where the volume is high). (The Python client's reconnect with deltas: tests/e2e/test_client_views.py.)
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from tests.support.schemas import protocol_schemas
from tests.support.serverproc import ServerProcess, scrape
from tests.support.timing import eventually_sync, timeout
from tests.support.tokens import SECRET, mint
from tests.support.viewkit import (
    QUOTE_KINDS,
    Merged,
    PolledSse,
    PolledWs,
    arrivals,
    catch_up,
    merged_mismatches,
    of,
    poll_all,
    restrict,
    throttle_violations,
    top_q,
    write_flip_recording,
)

SERVER = jsonschema.Draft202012Validator(protocol_schemas()[1])
WINDOW = 3.0  # seconds of counting: the window is the scenario, not a wait
GAUGE = "ticker_throttled_subscriptions"
Entry = dict[str, Any]


def valid(msg: Entry) -> None:
    SERVER.validate(msg)


@pytest.fixture(scope="module")
def sim() -> Iterator[ServerProcess]:
    """A simulated market ticking each symbol 20 times a second (flushes every 20 ms: 50 a second)."""
    args = ["--sim-rate", "20", "--seed", "16", "--log-level", "warning"]
    args += ["--symbols", "AAPL,MSFT,NVDA,TSLA,KO"]
    with ServerProcess(args) as srv:
        yield srv


@pytest.fixture(scope="module")
def flip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A replayed market of FLIP (its bid comes and goes) and HOLD (mostly unchanged), 20 quotes a second each."""
    path = write_flip_recording(tmp_path_factory.mktemp("views") / "flip.jsonl")
    with ServerProcess(
        ["--feed", "replay", "--replay-file", str(path), "--replay-loop", "--log-level", "warning"]
    ) as srv:
        yield srv


# -- maximum rate -------------------------------------------------------------------------------------
def test_max_hz_2_on_a_20_hz_symbol_sends_the_latest_value_at_most_twice_a_second(sim: ServerProcess):
    with (
        PolledWs(sim.port, "/ws?symbols=AAPL", on_message=valid) as full,
        PolledWs(sim.port, on_message=valid) as thr,
    ):
        full.wait(lambda m: m["type"] == "snapshot")
        thr.send({"op": "subscribe", "symbols": ["AAPL"], "max_hz": 2})
        # "The latest value when it is sent", checked by the order of the server's writes: the full subscriber is
        # read first, then the throttled one drained. An entry the throttled socket did not hold at the drain
        # before was written after every full entry read before that drain, so at the same flush or later:
        # its q is at least theirs (a throttled entry is rendered from the symbol's value at its flush).
        stale: list[str] = []
        full_q = seen_before = 0
        end = time.monotonic() + WINDOW
        while time.monotonic() < end:
            select.select([full, thr], [], [], 0.05)
            for _, m in full.poll():
                if m["type"] in QUOTE_KINDS:
                    full_q = max([full_q, *(e["q"] for e in m["data"])])
            for _, m in thr.poll():
                if m["type"] in QUOTE_KINDS:
                    stale += [
                        f"q {e['q']} sent after the full subscriber had {seen_before}"
                        for e in m["data"]
                        if e["q"] < seen_before
                    ]
            seen_before = full_q
        assert of(thr, "subscribed")[0]["rates"] == {"AAPL": 2.0}
        reference = catch_up(full, [thr])
        states = arrivals(thr, "AAPL")
    assert not stale, stale
    assert throttle_violations(states, 0.5) == []
    assert len(states) >= 3, states  # a 20 Hz symbol does reach a 2 Hz subscriber
    assert len(full.entries()) >= 20  # ... and the full subscriber gets it at many times that rate
    for _, e in states:  # each a value the symbol had: the full subscriber got the very same entry
        assert e == reference["AAPL", e["q"]]


def test_subscribers_at_different_rates_on_one_symbol_each_get_their_own(sim: ServerProcess):
    with PolledWs(sim.port, on_message=valid) as one, PolledWs(sim.port, on_message=valid) as four:
        one.send({"op": "subscribe", "symbols": ["NVDA"], "max_hz": 1})
        four.send({"op": "subscribe", "symbols": ["NVDA"], "max_hz": 4})
        poll_all([one, four], 1.0)
        with PolledWs(sim.port, "/ws?symbols=NVDA&max_hz=1", on_message=valid) as also_one:
            poll_all([one, four, also_one], WINDOW - 1.0)
            # The two 1 Hz subscribers share one stream: what the later one got after its snapshot, the other too.
            one.until(lambda: top_q(one) >= top_q(also_one), 5.0, "the first 1 Hz subscriber to get as far")
    rates = [of(c, "subscribed")[0]["rates"] for c in (one, four, also_one)]
    assert rates == [{"NVDA": 1.0}, {"NVDA": 4.0}, {"NVDA": 1.0}]
    n1, n4 = arrivals(one, "NVDA"), arrivals(four, "NVDA")
    assert throttle_violations(n1, 1.0) == [] and throttle_violations(n4, 0.25) == []
    assert throttle_violations(arrivals(also_one, "NVDA"), 1.0) == []
    assert len(n1) >= 2 and 2 * len(n1) <= len(n4), (len(n1), len(n4))
    first, last = of(also_one, "snapshot")[0]["data"][0]["q"], top_q(also_one)
    # Its snapshot is the latest value: the stream's pending entry may repeat it (a q not above it is ignored).
    assert [e["q"] for _, _, e in also_one.entries(["quotes"]) if e["q"] > first] == [
        e["q"] for _, _, e in one.entries(["quotes"]) if first < e["q"] <= last
    ]


def test_a_token_max_hz_claim_caps_every_symbol_of_its_user():
    args = ["--auth", "jwt", "--sim-rate", "20", "--symbols", "AAPL,MSFT,NVDA", "--log-level", "warning"]
    token = mint(ticker={"realtime": ["*"], "max_hz": 1})
    auth = [("Authorization", f"Bearer {token}")]
    with (
        ServerProcess(args, env={"TICKER_JWT_SECRET": SECRET}) as srv,
        PolledWs(srv.port, headers=auth, on_message=valid) as ws,
    ):
        ws.send({"op": "subscribe", "symbols": ["AAPL"], "max_hz": 10})
        assert ws.wait(lambda m: m["type"] == "subscribed")["rates"] == {"AAPL": 1.0}
        ws.send({"op": "subscribe", "symbols": ["MSFT"]})  # no max_hz: the cap still applies
        assert ws.wait(lambda m: m["type"] == "subscribed")["rates"] == {"AAPL": 1.0, "MSFT": 1.0}
        ws.send({"op": "subscribe", "symbols": ["NVDA"], "max_hz": 0.5})  # below the cap: as asked
        assert ws.wait(lambda m: m["type"] == "subscribed")["rates"] == {
            "AAPL": 1.0,
            "MSFT": 1.0,
            "NVDA": 0.5,
        }
        with (
            PolledSse(srv.port, "/sse?symbols=AAPL&max_hz=10", headers=auth, on_message=valid) as sse,
            PolledSse(srv.port, "/sse?symbols=MSFT", headers=auth, on_message=valid) as plain_sse,
        ):
            poll_all([ws, sse, plain_sse], WINDOW)
    assert of(sse, "subscribed")[0]["rates"] == {"AAPL": 1.0}
    assert of(plain_sse, "subscribed")[0]["rates"] == {"MSFT": 1.0}
    for client, symbol in ((ws, "AAPL"), (ws, "MSFT"), (sse, "AAPL"), (plain_sse, "MSFT")):
        states = arrivals(client, symbol)
        assert len(states) >= 2 and throttle_violations(states, 1.0) == [], (symbol, states)
    assert throttle_violations(arrivals(ws, "NVDA"), 2.0) == []


# -- fields and deltas ------------------------------------------------------------------------------------
def test_fields_and_delta_in_the_ws_url_merge_into_the_full_quotes_at_every_q(flip: ServerProcess):
    fields = ["p", "b", "v"]
    with (
        PolledWs(flip.port, "/ws?symbols=FLIP,HOLD", on_message=valid) as full,
        PolledWs(flip.port, "/ws?symbols=FLIP,HOLD&fields=p,b,v&delta=1", on_message=valid) as delta,
    ):
        poll_all([full, delta], 2.0)
        reference = catch_up(full, [delta])
    assert [m["type"] for _, m in delta.msgs][:1] == ["subscribed"] and of(delta, "options") == []
    assert of(delta, "subscribed")[0]["rates"] == {}
    entries = delta.entries()
    assert all(e.keys() <= {"s", "t", "q", *fields} for _, _, e in entries)
    compared, bad = merged_mismatches(delta, reference, fields)
    assert bad == [] and compared >= 40, (compared, bad[:5])
    quotes = [e for _, kind, e in entries if kind == "quotes"]
    assert any(e["s"] == "FLIP" and "b" in e and e["b"] is None for e in quotes)  # the bid went away: null
    assert any(e["s"] == "HOLD" and e.keys() == {"s", "t", "q"} for e in quotes)  # nothing else changed


def test_the_options_op_switches_fields_and_deltas_with_a_full_snapshot(flip: ServerProcess):
    with (
        PolledWs(flip.port, "/ws?symbols=FLIP,HOLD", on_message=valid) as full,
        PolledWs(flip.port, "/ws?symbols=FLIP,HOLD", on_message=valid) as ws,
    ):
        steps: list[tuple[dict[str, Any], dict[str, Any]]] = [
            ({"fields": ["b", "p"], "delta": True}, {"fields": ["p", "b"], "delta": True}),
            ({"fields": None}, {"fields": None, "delta": True}),
            ({"delta": False}, {"fields": None, "delta": False}),
        ]
        poll_all([full, ws], 0.5)
        for asked, in_force in steps:
            ws.send({"op": "options", **asked})
            assert ws.wait(lambda m: m["type"] == "options") == {"type": "options", **in_force}
            poll_all([full, ws], 1.0)
        reference = catch_up(full, [ws])
    # Each segment after an options reply: a snapshot first, then entries under the new options.
    marks = [i + 1 for i, (_, m) in enumerate(ws.msgs) if m["type"] == "options"]
    segments = [ws.msgs[a:b] for a, b in zip(marks, [*marks[1:], len(ws.msgs) + 1], strict=True)]
    for (_, in_force), segment in zip(steps, segments, strict=True):
        assert segment[0][1]["type"] == "snapshot" and {e["s"] for e in segment[0][1]["data"]} == {
            "FLIP",
            "HOLD",
        }
        merged, fields, compared = Merged(), in_force["fields"], 0
        for _, m in segment:
            for e in m.get("data", []) if m["type"] in QUOTE_KINDS else []:
                ref = restrict(reference[e["s"], e["q"]], fields)
                if not in_force["delta"] or m["type"] == "snapshot":
                    assert e == ref  # full entries
                state = merged.apply(m["type"], e) if in_force["delta"] else e
                assert state is None or state == ref, (in_force, e, state, ref)
                compared += 1
        assert compared >= 20, (in_force, compared)
    narrow = [e for _, m in segments[0] if m["type"] in QUOTE_KINDS for e in m["data"]]
    assert all(e.keys() <= {"s", "t", "q", "p", "b"} for e in narrow)
    assert any(e.keys() == {"s", "t", "q"} for e in narrow)  # deltas: HOLD's unchanged price left out


def test_bad_rates_fields_and_delta_are_bad_request_naming_the_unknown_fields(flip: ServerProcess):
    for query, words in (
        ("fields=p,bogus,zz", "unknown fields: bogus, zz"),
        ("max_hz=0.05", "max_hz"),
        ("max_hz=fast", "max_hz"),
        ("delta=maybe", "delta"),
    ):
        with PolledWs(flip.port, f"/ws?symbols=FLIP&{query}", on_message=valid) as ws:
            ws.send({"op": "ping", "id": 1})
            ws.wait(lambda m: m["type"] == "pong")
            errors = of(ws, "error")
            assert [m["type"] for _, m in ws.msgs] == ["error", "pong"], (
                query,
                ws.msgs,
            )  # nothing subscribed
            assert errors[0]["code"] == "bad_request" and words in errors[0]["message"], (query, errors)
    with PolledWs(flip.port, on_message=valid) as ws:
        requests: list[dict[str, Any]] = [
            {"op": "options", "fields": ["p", "x", "zz"]},
            {"op": "options"},
            {"op": "options", "fields": []},
            {"op": "options", "delta": "yes"},
            {"op": "subscribe", "symbols": ["FLIP"], "max_hz": 0.05},
            {"op": "subscribe", "symbols": ["FLIP"], "max_hz": True},
            {"op": "subscribe", "symbols": ["FLIP"], "max_hz": "2"},
        ]
        for r in requests:
            ws.send(r)
        ws.send({"op": "ping", "id": 2})
        ws.wait(lambda m: m["type"] == "pong")
        kinds = [m["type"] for _, m in ws.msgs]
        assert kinds == ["error"] * len(requests) + ["pong"], kinds  # nothing subscribed, nothing changed
        errors = of(ws, "error")
        assert {m["code"] for m in errors} == {"bad_request"}
        assert "unknown fields: x, zz" in errors[0]["message"]


def test_a_late_joiner_of_a_throttled_delta_stream_merges_into_the_full_quotes(flip: ServerProcess):
    path = "/ws?symbols=FLIP,HOLD&fields=p,b&delta=1&max_hz=4"
    with (
        PolledWs(flip.port, "/ws?symbols=FLIP,HOLD", on_message=valid) as full,
        PolledWs(flip.port, path, on_message=valid) as early,
    ):
        poll_all([full, early], 1.0)
        with PolledWs(flip.port, path, on_message=valid) as late:
            poll_all([full, early, late], 1.5)
            reference = catch_up(full, [early, late])
    for client in (early, late):
        compared, bad = merged_mismatches(client, reference, ["p", "b"])
        assert bad == [] and compared >= 6, (compared, bad[:5])
        for symbol in ("FLIP", "HOLD"):
            assert throttle_violations(arrivals(client, symbol), 0.25) == []


# -- a stalled reader -------------------------------------------------------------------------------------
def test_a_stalled_throttled_delta_reader_resumes_with_a_snapshot_and_merges_into_the_full_quotes():
    # 80 symbols at 200 ticks a second: the stalled reader's deltas fill the socket buffers (megabytes on
    # loopback) in a few seconds; the full reader, which must keep up, takes the first 15 only.
    symbols = [f"S{i}" for i in range(80)]
    throttled, compared_symbols = symbols[:10], symbols[:15]
    args = ["--symbols", ",".join(symbols), "--sim-rate", "200", "--flush-ms", "5", "--seed", "3"]
    args += ["--slow-bytes", "16384", "--slow-timeout", "60", "--log-level", "warning"]
    checked = 0

    def sampled(msg: Entry) -> None:  # checking every entry costs too much here: every 25th quotes message
        nonlocal checked
        checked += 1
        if msg["type"] != "quotes" or checked % 25 == 0:
            valid(msg)

    with (
        ServerProcess(args) as srv,
        PolledWs(srv.port, "/ws?symbols=" + ",".join(compared_symbols), on_message=sampled) as full,
        PolledWs(
            srv.port, "/ws?delta=1&symbols=" + ",".join(symbols), rcvbuf=4096, on_message=sampled
        ) as slow,
    ):
        slow.send({"op": "subscribe", "symbols": throttled, "max_hz": 10})
        slow.until(lambda: len(of(slow, "snapshot")) == 2, 5.0, "the snapshot of the re-rated symbols")
        rerated = next(i for i, (_, m) in enumerate(slow.msgs) if m["type"] == "subscribed" and m["rates"])
        # Stop reading the slow one (the full one goes on) until the server conflates it.
        deadline = time.monotonic() + timeout(20)
        while scrape(srv.url).get("ticker_updates_conflated_total", 0) == 0:
            assert time.monotonic() < deadline, "the server did not conflate the stalled reader"
            poll_all([full], 0.1)

        def after_catch_up() -> int:
            """Entries of ``quotes`` after the catch-up snapshot (the third: opening, re-rate, catch-up)."""
            at = [i for i, (_, m) in enumerate(slow.msgs) if m["type"] == "snapshot"][2:3]
            return sum(len(m["data"]) for _, m in slow.msgs[at[0] :] if m["type"] == "quotes") if at else 0

        end = time.monotonic() + timeout(20)
        while after_catch_up() < 5000:
            assert time.monotonic() < end, (
                f"no catch-up snapshot, or few entries after it ({after_catch_up()})"
            )
            poll_all([full, slow], 0.05)
        reference = catch_up(full, [slow], compared_symbols)
    # Every state merged is compared where the full reader got that q (it may have been conflated too).
    catch_up_at = [i for i, (_, m) in enumerate(slow.msgs) if m["type"] == "snapshot"][2]
    compared, bad = merged_mismatches(slow, reference, None, False, compared_symbols, catch_up_at)
    assert bad == [] and compared >= 150, (compared, bad[:5])  # after the catch-up: about 5000 * 5 / 70
    quotes = [e for _, kind, e in slow.entries() if kind == "quotes"]
    assert any("pc" not in e for e in quotes)  # deltas: the previous close does not change
    assert of(slow, "subscribed")[-1]["rates"] == dict.fromkeys(throttled, 10.0)
    for s in throttled:  # from the re-rate's snapshot on
        assert throttle_violations(arrivals(slow, s, rerated), 0.1) == [], s


# -- the gauge --------------------------------------------------------------------------------------------
def test_the_throttled_subscriptions_gauge_counts_them_and_drops_when_they_leave(sim: ServerProcess):
    def gauge_is(n: int) -> None:
        eventually_sync(lambda: scrape(sim.url).get(GAUGE) == n, 5.0, f"{GAUGE} {n}")

    def rates(client: PolledWs, want: dict[str, float]) -> None:
        client.until(lambda: of(client, "subscribed")[-1:] and of(client, "subscribed")[-1]["rates"] == want)

    gauge_is(0)
    with PolledWs(sim.port, "/ws?symbols=AAPL,MSFT&max_hz=2", on_message=valid) as a:
        gauge_is(2)
        with PolledWs(sim.port, "/ws?symbols=AAPL,NVDA&fields=p&delta=1", on_message=valid) as b:
            b.send({"op": "subscribe", "symbols": ["AAPL"], "max_hz": 1})
            rates(b, {"AAPL": 1.0})
            gauge_is(3)  # NVDA has fields and deltas but no rate: not counted
            with PolledSse(sim.port, "/sse?symbols=KO,TSLA&max_hz=1", on_message=valid):
                gauge_is(5)
                a.send({"op": "subscribe", "symbols": ["MSFT"]})  # again without max_hz: unthrottled
                rates(a, {"AAPL": 2.0})
                gauge_is(4)
                b.send({"op": "unsubscribe", "symbols": ["AAPL"]})
                rates(b, {})
                gauge_is(3)
            gauge_is(1)  # the event stream went away
        gauge_is(1)
    gauge_is(0)
