"""End to end: fake upstream → ``ticker serve --feed finnhub-rest|yahoo|replay`` → a WebSocket subscriber.

Also ``ticker record`` → ``ticker serve --feed replay`` of what was recorded, and clear startup errors.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import urllib.request
from pathlib import Path

import orjson
import websockets

from feeds.recording.format import Reader, encode, header, scan
from tests.support.fakes.fake_finnhub_rest import FakeFinnhubRest
from tests.support.fakes.fake_yahoo import FakeYahoo
from tests.support.serverproc import run_cli, serving
from tests.support.timing import eventually, timeout
from tests.support.wsclient import ws_quotes
from ticker.quote import Quote


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout(5)) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_finnhub_rest_prices_reach_a_subscriber() -> None:
    async with FakeFinnhubRest() as fake:
        fake.faults.extend(["429:0.3", "garbage"])
        async with serving(
            "--feed",
            "finnhub-rest",
            "--feed-url",
            fake.url,
            "--symbols",
            "AAPL",
            "--poll-rate",
            "20",
            "--poll-interval",
            "0.2",
            env={"FINNHUB_TOKEN": "test-token"},
        ) as srv:
            got = await ws_quotes(srv.url, ["AAPL"], lambda e: len(e) >= 3)
            assert {e["s"] for e in got} == {"AAPL"}
            assert all(e["p"] > 261.74 for e in got) and all("c" in e and "cp" in e for e in got)
            assert got[-1]["p"] >= got[0]["p"]  # the fake moves up one cent per poll
            _, metrics = await asyncio.to_thread(http_get, srv.url + "/metrics")
            assert 'ticker_feed_errors_total{feed="finnhub-rest",kind="rate_limited"} 1.0' in metrics
            assert 'ticker_feed_errors_total{feed="finnhub-rest",kind="malformed"} 1.0' in metrics
            status, body = await asyncio.to_thread(http_get, srv.url + "/readyz")
            assert status == 200, body
        assert {h.query["symbol"] for h in fake.hits} == {"AAPL"}


async def test_finnhub_rest_bad_token_shows_in_readyz() -> None:
    async with FakeFinnhubRest() as fake:
        async with serving(
            "--feed",
            "finnhub-rest",
            "--feed-url",
            fake.url,
            "--symbols",
            "AAPL",
            "--poll-interval",
            "0.2",
            env={"FINNHUB_TOKEN": "wrong"},
        ) as srv:

            async def not_ready() -> tuple[int, str] | None:
                r = await asyncio.to_thread(http_get, srv.url + "/readyz")
                return r if r[0] == 503 else None

            # AAPL demanded for the whole wait (a poll must find it demanded to meet the 401)
            async with websockets.connect(srv.url.replace("http", "ws", 1) + "/ws") as ws:
                await ws.send(orjson.dumps({"op": "subscribe", "symbols": ["AAPL"]}).decode())
                r = await eventually(not_ready, 20.0, "/readyz to answer 503", interval=0.2)
            assert "refused the credentials (HTTP 401; check FINNHUB_TOKEN)" in r[1]
        assert "wrong" not in srv.output()  # the token is never logged


async def test_yahoo_prices_reach_a_subscriber() -> None:
    async with FakeYahoo() as fake:
        async with serving(
            "--feed",
            "yahoo",
            "--feed-url",
            fake.url,
            "--symbols",
            "AAPL,BTC-USD,NOPE",
            "--poll-rate",
            "10",
            "--poll-interval",
            "0.2",
        ) as srv:
            got = await ws_quotes(
                srv.url, ["AAPL", "BTC-USD", "NOPE"], lambda e: {"AAPL", "BTC-USD"} <= {x["s"] for x in e}
            )
            btc = next(e for e in got if e["s"] == "BTC-USD")
            assert btc["p"] > 97000.5 and btc["b"] < btc["p"] < btc["a"]
            assert "NOPE" not in {e["s"] for e in got}
            line = 'ticker_feed_errors_total{feed="yahoo",kind="unknown_symbol"} 1.0'

            async def counted() -> bool:
                return line in (await asyncio.to_thread(http_get, srv.url + "/metrics"))[1]

            await eventually(counted, 5.0, "the unknown symbol counted", interval=0.1)
        assert "NOPE" in srv.output()  # reported in the log


async def test_replay_of_the_bundled_sample_serves_every_recorded_symbol() -> None:
    async with serving("--feed", "replay", "--replay-speed", "10") as srv:
        got = await ws_quotes(srv.url, ["AAPL", "SPY"], lambda e: {"AAPL", "SPY"} <= {x["s"] for x in e})
        assert all(200 < e["p"] < 260 for e in got if e["s"] == "AAPL")
        _, symbols = await asyncio.to_thread(http_get, srv.url + "/api/symbols")
        assert "QQQ" in symbols and "BRK.B" in symbols


async def test_replay_keeps_order_and_loops(tmp_path: Path) -> None:
    path = tmp_path / "zzz.jsonl"
    t0 = 1_763_000_000_000
    lines = [header(["test"])] + [
        encode(Quote("ZZZ", float(i), t0 + i * 100), t0 + i * 100) for i in range(1, 21)
    ]
    path.write_bytes(b"".join(lines))
    async with serving(
        "--feed", "replay", "--replay-file", str(path), "--replay-loop", "--symbols", "ZZZ"
    ) as srv:
        got = await ws_quotes(srv.url, ["ZZZ"], lambda e: len(e) >= 25, within=30)
    prices = [int(e["p"]) for e in got]
    steps = [(b - a) % 20 for a, b in itertools.pairwise(prices)]
    assert all(1 <= s <= 3 for s in steps), prices  # in recorded order, round and round
    assert any(b < a for a, b in itertools.pairwise(prices))  # it wrapped around


async def test_record_then_serve_the_recording(tmp_path: Path) -> None:
    out = tmp_path / "session.jsonl.gz"
    code, err = await run_cli(
        "record",
        "--feed",
        "simulated",
        "--symbols",
        "AAPL,MSFT",
        "--sim-rate",
        "20",
        "--seed",
        "3",
        "--duration",
        "1.5",
        "--out",
        str(out),
    )
    assert code == 0, err
    summary = scan(out)
    assert set(summary.symbols) == {"AAPL", "MSFT"} and summary.count >= 30
    assert f"ticker record: {summary.count} quotes of 2 symbols" in err
    recorded = {round(q.price, 2) for _, q in Reader(out) if q.symbol == "MSFT"}

    async with serving(
        "--feed", "replay", "--replay-file", str(out), "--replay-speed", "0", "--symbols", "AAPL,MSFT"
    ) as srv:
        got = await ws_quotes(srv.url, ["MSFT"], lambda e: len(e) >= 1)
    assert got[0]["s"] == "MSFT" and round(got[0]["p"], 2) in recorded


async def test_record_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    out = tmp_path / "until-sigint.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ticker",
        "record",
        "--feed",
        "simulated",
        "--symbols",
        "AAPL",
        "--sim-rate",
        "50",
        "--out",
        str(out),
        stderr=asyncio.subprocess.PIPE,
    )
    await eventually(
        lambda: out.exists() and out.stat().st_size >= 500, 20.0, "the first quotes in the file", interval=0.1
    )
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), timeout(20))
    assert proc.returncode == 0, err
    assert scan(out).count >= 3


async def test_startup_errors_are_clear(tmp_path: Path) -> None:
    code, err = await run_cli("serve", "--port", "0", "--feed", "finnhub-rest")
    assert code == 2 and "FINNHUB_TOKEN" in err
    code, err = await run_cli(
        "serve", "--port", "0", "--feed", "replay", "--replay-file", str(tmp_path / "none")
    )
    assert code == 2 and "cannot open recording" in err
    (tmp_path / "foreign.jsonl").write_text('{"hello": 1}\n')
    code, err = await run_cli(
        "serve", "--port", "0", "--feed", "replay", "--replay-file", str(tmp_path / "foreign.jsonl")
    )
    assert code == 2 and "not a ticker recording" in err
    code, err = await run_cli("record", "--feed", "simulated", "--duration", "1")
    assert code == 2 and "--out" in err
