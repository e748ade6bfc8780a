"""The servers under test: ticker itself and the peers, how to start each and whether it can run here."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

from bench.scenarios import UNIVERSE, Scenario

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "bench" / "node"
PEERS = ["naive", "websockets", "node"]
SECRET_ENV = (
    "TICKER_JWT_SECRET"  # the HS256 secret of ``--auth jwt`` runs, for the server and the load generators
)
METRICS_TOKEN = "bench-metrics-token"  # what /metrics asks for on the public port under ``--auth jwt``
LABELS = {
    "ours": "ticker",
    "naive": "naive Tornado",
    "websockets": "websockets.broadcast",
    "node": "Node ws",
}


def ticker_command() -> list[str]:
    """How to invoke the ``ticker`` console script of this environment."""
    script = Path(sys.executable).parent / "ticker"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ticker"]


@functools.cache
def ticker_help() -> str | None:
    """``ticker serve --help`` output, or None when the server cannot start here."""
    try:
        out = subprocess.run(
            [*ticker_command(), "serve", "--help"], capture_output=True, text=True, timeout=30, cwd=ROOT
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def unavailable(server: str, sc: Scenario) -> str | None:
    """Why ``server`` cannot run scenario ``sc`` here, or None when it can."""
    if server == "ours":
        help_text = ticker_help()
        if help_text is None:
            return "`ticker serve` is not available"
        if sc.workers > 1 and "--workers" not in help_text:
            return "`ticker serve --workers` is not available yet"
        if sc.auth != "none" and "--auth" not in help_text:
            return "`ticker serve --auth` is not available yet"
        if sc.bars and "--max-bar-subscriptions" not in help_text:
            return "bars (`subscribe_bars`) are not available yet"
    elif server == "node":
        if shutil.which("node") is None:
            return "node is not installed"
        if not (NODE_DIR / "node_modules" / "ws").is_dir():
            return "bench/node/node_modules missing (run `npm ci` in bench/node)"
    elif server not in PEERS:
        return f"unknown server {server!r}"
    return None


#: The load comes from one address, faster than any client would connect: lift the per-address and
#: connect-rate limits (docs/security.md), which the bench does not measure.
UNLIMITED_ADMISSION = [
    *("--max-connections-per-ip", "1000000", "--connect-rate", "1000000", "--connect-burst", "1000000"),
    *("--process-connect-rate", "1000000", "--process-connect-burst", "1000000"),
    *("--rest-rate", "1000000", "--rest-burst", "1000000"),
]


def command(server: str, sc: Scenario, port: int) -> list[str]:
    """The command line starting ``server`` for scenario ``sc`` on 127.0.0.1:``port``."""
    common = [
        "--port",
        str(port),
        "--symbols",
        ",".join(UNIVERSE),
        "--sim-rate",
        f"{sc.rate:g}",
        "--seed",
        "1",
    ]
    if server == "ours":
        extra = ["--workers", str(sc.workers)] if sc.workers > 1 else []
        if sc.flush_ms is not None:
            extra += ["--flush-ms", f"{sc.flush_ms:g}"]
        if sc.auth != "none":
            extra += ["--auth", sc.auth]
        if sc.delay is not None:
            extra += ["--delay", f"{sc.delay:g}"]
        extra += UNLIMITED_ADMISSION
        return [*ticker_command(), "serve", *common, "--log-level", "warning", *extra]
    if server == "naive":
        return [sys.executable, "-m", "bench.peers.naive_tornado", *common]
    if server == "websockets":
        return [sys.executable, "-m", "bench.peers.websockets_broadcast", *common]
    if server == "node":
        return ["node", str(NODE_DIR / "server.js"), *common]
    raise ValueError(f"unknown server {server!r}")


def environment(sc: Scenario) -> dict[str, str]:
    """Variables the server of ``sc`` needs beyond the caller's environment (the token keys of ``--auth jwt``)."""
    if sc.auth == "none":
        return {}
    from tests.support.tokens import (
        SECRET,
    )  # the test suite's HS256 secret (PyJWT comes with the server extra)

    return {SECRET_ENV: SECRET, "TICKER_METRICS_TOKEN": METRICS_TOKEN}


def metrics_token(sc: Scenario) -> str | None:
    """The bearer token ``/metrics`` asks for in ``sc`` (None: open)."""
    return METRICS_TOKEN if sc.auth != "none" else None
