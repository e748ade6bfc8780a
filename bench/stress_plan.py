"""What ``make stress`` runs: the attacks of issue 17 with their sizes (full, quick, smoke), and the servers.

Every attack is one row of the table in docs/security.md; its ``what`` names what the attackers did
(``{n}``, ``{idle}``, ``{s}`` seconds, ``{addrs}``, ``{size}``, ``{nofile}`` filled in at run time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ticker.symbols import DEFAULT_UNIVERSE

CANARY = list(DEFAULT_UNIVERSE)  # 32 symbols at 2 ticks a second each: a frame every ~20-40 ms
TARGETS: dict[str, tuple[list[str], int]] = {  # name: (ticker serve arguments, RLIMIT_NOFILE or 0)
    "main": ([], 0),
    "ulimit": (["--metrics-port", "0"], 1024),
    "demand": (["--unknown-symbols", "allow"], 0),
}


@dataclass(frozen=True)
class Attack:
    """One row: ``job`` (the :class:`Job` fields) split over ``workers`` processes and ``addrs`` source
    addresses, against the ``target`` server. ``over``: the job opens the server's effective
    ``--max-connections`` plus that many; ``symbols``: it gets that many of the directory's symbols."""

    name: str
    what: str
    job: dict[str, Any]
    addrs: int = 1
    workers: int = 1
    target: str = "main"
    over: int | None = None
    symbols: int = 0
    kind: str = ""  # the attack function of :mod:`bench.stress_attacks`, when not ``name``


@dataclass(frozen=True)
class Sizes:
    """How big and long a run is."""

    name: str
    recovery: float
    attacks: list[Attack]
    soak: float
    soak_clients: int
    storm: int
    storm_workers: int
    ulimit: int = 1024


def plan(sizes: str) -> Sizes:
    """The attacks of a run of ``sizes``; durations shrink in quick, everything in smoke."""
    q = 1.0 if sizes == "full" else 0.5
    a = [
        Attack(
            "fd",
            "WebSockets up to and past the effective --max-connections ({n:,}), then {idle:,} idle "
            "TCP connections; held {s:g} s",
            {"seconds": 15 * q, "within": 90, "idle": 2000},
            addrs=250,
            workers=4,
            over=1000,
        ),
        Attack(
            "fd-ulimit",
            "a server under ulimit -n {nofile}: {n:,} WebSockets, then {idle:,} idle TCP "
            "connections; held {s:g} s",
            {"n": 1500, "seconds": 10 * q, "within": 60, "idle": 800},
            addrs=20,
            target="ulimit",
            kind="fd",
        ),
        Attack(
            "slow-readers",
            "{n:,} never-reading subscribers of 500 symbols each ({addrs} addresses, 4 KiB "
            "receive buffers) for {s:g} s",
            {"n": 1000, "seconds": 30 * q},
            addrs=10,
            workers=2,
            symbols=500,
        ),
        Attack(
            "connect-flood",
            "one address opening {n:,} WebSockets, {size} in flight, for at most {s:g} s; "
            "the accepted ones stay",
            {"n": 15000, "seconds": 40 * q, "size": 250},
            workers=2,
        ),
        Attack(
            "ping-ids",
            "{n:,} never-reading connections, each sending a second a ping with a 60 KB id and "
            "30 with a 250-byte id, for {s:g} s; reopened when closed",
            {"n": 1000, "seconds": 30 * q, "size": 60000},
            addrs=10,
            workers=2,
        ),
        Attack(
            "demand",
            "{n} reading connections × {size} symbols of their own (a server with --unknown-symbols "
            "allow) for {s:g} s",
            {"n": 80, "seconds": 30 * q, "size": 500},
            addrs=4,
            target="demand",
        ),
        Attack(
            "ping-flood",
            "{n} connections ({addrs} addresses) writing empty pings as fast as the socket "
            "takes them, reopened when closed, for {s:g} s",
            {"n": 64, "seconds": 20 * q},
            addrs=64,
        ),
        Attack(
            "cont-flood", "the same with empty continuation frames", {"n": 64, "seconds": 20 * q}, addrs=64
        ),
        Attack("pong-flood", "the same with unsolicited pongs", {"n": 64, "seconds": 20 * q}, addrs=64),
        Attack(
            "rest",
            "{n} keep-alive REST clients of one address asking /api/quotes back to back, ignoring "
            "Retry-After, for {s:g} s",
            {"n": 200, "seconds": 20 * q},
            symbols=2,
        ),
        Attack(
            "slowloris",
            "{n:,} connections ({addrs} addresses) sending a request's headers a byte every 2 s, "
            "coming back 1 s after each close, for {s:g} s",
            {"n": 2000, "seconds": 30 * q},
            addrs=4,
        ),
        Attack(
            "slow-post",
            "{n} POSTs announcing a 1 MB body and sending a byte a second, coming back 1 s "
            "after each close, for {s:g} s",
            {"n": 300, "seconds": 20 * q},
        ),
        Attack(
            "rebinding",
            "{n} loops sending 12 look-alike Host and Origin requests (/ws, /sse, /api, the "
            "page) for {s:g} s",
            {"n": 20, "seconds": 10 * q},
            addrs=50,
        ),
    ]
    if sizes == "smoke":
        small = {
            "fd-ulimit": {"n": 250, "idle": 120, "seconds": 2, "within": 20},
            "slow-readers": {"n": 50, "seconds": 3},
            "ping-ids": {"n": 50, "seconds": 3},
            "pong-flood": {"n": 8, "seconds": 2},
            "slow-post": {"n": 20, "seconds": 2},
            "rebinding": {"n": 4, "seconds": 2},
        }
        a = [
            Attack(
                x.name,
                x.what,
                {**x.job, **small[x.name]},
                min(x.addrs, 4),
                1,
                x.target,
                x.over,
                x.symbols,
                x.kind,
            )
            for x in a
            if x.name in small
        ]
        return Sizes("smoke", 0.5, a, soak=5, soak_clients=20, storm=100, storm_workers=1, ulimit=256)
    if sizes == "quick":
        return Sizes("quick", 15.0, a, soak=90, soak_clients=200, storm=2000, storm_workers=2)
    return Sizes("full", 60.0, a, soak=600, soak_clients=200, storm=5000, storm_workers=4)
