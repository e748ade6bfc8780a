"""Server configuration, built from the command line and ``TICKER_*`` environment variables."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field


@dataclass(slots=True)
class Config:
    """Everything ``ticker serve`` can be told; defaults match the CLI's."""

    host: str = "127.0.0.1"
    port: int = 8888
    feeds: list[str] = field(default_factory=lambda: ["simulated"])
    symbols: list[str] | None = None
    sim_rate: float = 2.0
    seed: int | None = None
    flush_ms: float = 20.0
    allowed_origins: frozenset[str] = frozenset()
    log_level: str = "info"
    max_symbols: int = 500
    max_message_bytes: int = 64 * 1024
    max_connections: int = 50_000
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    slow_bytes: int = 1 << 20
    slow_timeout: float = 10.0
    rate_limit: float = 50.0
    rate_burst: int = 100
    stale_after: float = 15.0
    workers: int = 1
    #: Serve /metrics, /healthz and /readyz on this port too (worker i of --workers uses port + i).
    metrics_port: int | None = None
    worker_index: int = 0
    #: ``memory`` or ``redis://HOST:PORT/DB`` (an edge node fed by ``ticker feed``).
    broker: str = "memory"
    broker_prefix: str = "ticker"
    demand_ttl: float = 15.0
    #: The parsed command line, for feed factories that read their own flags.
    args: argparse.Namespace = field(default_factory=argparse.Namespace)
