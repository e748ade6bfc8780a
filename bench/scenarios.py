"""Benchmark scenarios (issue 5) and what each connection subscribes to.

Every scenario runs against a server over a universe of 100 symbols (``S001``..``S100``) ticking
``rate`` times per second each. ``sizes`` picks the full, quick (``QUICK=1``) or smoke (the test
suite) variant: only connection counts, rates and the measured window shrink.

The ``-jwt`` and ``-delayed`` variants run ``ticker serve --auth jwt`` (issue 12): every connection
presents a signed token in its upgrade request; in ``-delayed`` a share of them hold a token that
makes every symbol delayed, and the server's ``--delay`` is short so that delayed quotes flow
within the window (the delay line's memory at the default 900 s is ``python -m bench.delay_memory``).

A scenario with ``bars`` (issue 14) also subscribes each connection to that many bar series with
``subscribe_bars``: the intervals of :data:`BAR_INTERVALS` of its first symbols in turn (``bars=4``: the
first two symbols at ``1s`` and at ``1m``), each asking for ``bar_history`` bars of history. Ours only:
the peers have no bars.

Issue 16's options, ours only too (the peers have neither): ``delta`` opens every connection at
``/ws?delta=1`` (changed-fields deltas), ``max_hz`` adds ``"max_hz"`` to every ``subscribe`` (at most that
many entries per second per symbol and connection); :meth:`Scenario.base_name` names the scenario a
variant is compared with.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

UNIVERSE = [f"S{i:03d}" for i in range(1, 101)]
BAR_INTERVALS = ("1s", "1m")  # the intervals a connection's bar subscriptions cycle through
DEFAULT_FLUSH_MS = 20.0  # ``ticker serve --flush-ms`` default: at most one ``bar`` per series per flush


@dataclass(frozen=True, slots=True)
class Scenario:
    """One load shape: ``conns`` connections, each subscribed per ``mode`` to ``per_conn`` symbols."""

    name: str
    conns: int
    mode: str  # "all" | "same" | "random" | "one"
    per_conn: int
    rate: float
    description: str
    workers: int = 1  # >1: ours only, with ``ticker serve --workers N``
    flush_ms: float | None = None  # set: ours only, with ``ticker serve --flush-ms N``
    auth: str = "none"  # "jwt": ours only, ``ticker serve --auth jwt``, every connection with a token
    delayed_share: float = 0.0  # with auth "jwt": this share of the connections gets every symbol delayed
    delay: float | None = None  # set: ``ticker serve --delay N``
    bars: int = 0  # bar subscriptions per connection (``subscribe_bars``), ours only
    bar_history: int = 0  # ``history`` asked for in each ``subscribe_bars``
    delta: bool = False  # every connection at ``/ws?delta=1``: changed-fields deltas, ours only
    max_hz: float | None = None  # set: ``"max_hz"`` in every ``subscribe``, ours only
    loadgens: int = 2  # load-generator processes
    warmup: float = 3.0  # seconds between "all subscribed" and the measured window
    window: float = 10.0  # measured window, seconds

    def symbols_for(self, conn: int) -> list[str]:
        """The symbols connection number ``conn`` subscribes to (deterministic)."""
        if self.mode == "all":
            return UNIVERSE[: self.per_conn]
        if self.mode == "same":
            return UNIVERSE[: self.per_conn]
        if self.mode == "one":
            return [UNIVERSE[0]]
        if self.mode == "random":
            # a variant (broad-delta) draws the same symbols as its base (broad): the runs compare
            return random.Random(f"{self.base_name or self.name}:{conn}").sample(UNIVERSE, self.per_conn)
        raise ValueError(f"unknown mode {self.mode!r}")

    def bar_subscriptions(self, conn: int) -> list[tuple[str, str]]:
        """The (symbol, interval) bar series connection number ``conn`` subscribes to: each of
        :data:`BAR_INTERVALS` of its first symbol, then of its second, ..., ``bars`` in all."""
        pairs = [(s, iv) for s in self.symbols_for(conn) for iv in BAR_INTERVALS]
        return pairs[: self.bars]

    def subscribe_request(self, conn: int) -> dict[str, object]:
        """The ``subscribe`` message connection number ``conn`` sends (with ``max_hz`` when set)."""
        request: dict[str, object] = {"op": "subscribe", "symbols": self.symbols_for(conn)}
        if self.max_hz is not None:
            request["max_hz"] = self.max_hz
        return request

    def ws_path(self) -> str:
        """The path every connection opens (``/ws``, with ``?delta=1`` for deltas)."""
        return "/ws?delta=1" if self.delta else "/ws"

    @property
    def base_name(self) -> str | None:
        """The scenario this one varies by issue 16's options (``broad-delta`` → ``broad``), None for others."""
        return self.name.split("-")[0] if self.delta or self.max_hz is not None else None

    def is_delayed(self, conn: int) -> bool:
        """Whether connection number ``conn`` holds a delayed-only token (spread evenly over the numbers)."""
        return int((conn + 1) * self.delayed_share) > int(conn * self.delayed_share)

    def describe(self) -> str:
        """One line saying what this scenario runs."""
        workers = f", `ticker serve --workers {self.workers}`" if self.workers > 1 else ""
        if self.flush_ms is not None:
            workers += f", `ticker serve --flush-ms {self.flush_ms:g}`"
        if self.auth != "none":
            delay = f" --delay {self.delay:g}" if self.delay is not None else ""
            workers += f", `ticker serve --auth {self.auth}{delay}`, every connection presenting a token"
            if self.delayed_share:
                workers += f", {self.delayed_share:.0%} of them delayed-only (latency: the real-time ones)"
            else:
                workers += " (all real-time)"
        if self.bars:
            pairs = self.bar_subscriptions(0)
            series = ", ".join(f"{s} {iv}" for s, iv in pairs)
            workers += (
                f", each also subscribed to {len(pairs)} bar series (`subscribe_bars` {series}, "
                f"`history` {self.bar_history})"
            )
        if self.delta:
            workers += ", every connection at `/ws?delta=1` (changed-fields deltas)"
        if self.max_hz is not None:
            workers += f', every `subscribe` with `"max_hz": {self.max_hz:g}`'
        return f"{self.conns:,} connections {self.description}, {self.rate:g} tick{'' if self.rate == 1 else 's'}/s per symbol{workers}"

    @property
    def ours_only(self) -> bool:
        """Whether only ticker runs this scenario (a ticker option, no peer equivalent)."""
        return (
            self.workers > 1
            or self.flush_ms is not None
            or self.auth != "none"
            or self.bars > 0
            or self.delta
            or self.max_hz is not None
        )

    def tick_rate(self) -> float:
        """Ticks per second per symbol a connection can get: the market's, capped at ``max_hz``."""
        return self.rate if self.max_hz is None else min(self.rate, self.max_hz)

    def offered_per_second(self) -> float:
        """Updates per second the clients would get if every tick reached every subscriber (at most
        ``max_hz`` per symbol and connection)."""
        return self.conns * len(self.symbols_for(0)) * self.tick_rate()

    def offered_bars_per_second(self) -> float:
        """``bar`` messages per second if every tick moved the current bar of each subscribed series (at
        most one per series and flush)."""
        per_series = min(self.rate, 1000.0 / (self.flush_ms or DEFAULT_FLUSH_MS))
        return self.conns * len(self.bar_subscriptions(0)) * per_series


FULL: list[Scenario] = [
    Scenario("firehose", 100, "all", 100, 100.0, "each subscribed to all 100 symbols"),
    Scenario("crowd", 10_000, "same", 20, 1.0, "all subscribed to the same 20 symbols"),
    Scenario("broad", 2_000, "random", 10, 10.0, "each subscribed to 10 random symbols of 100"),
    Scenario("idle", 10_000, "one", 1, 0.1, "all subscribed to one quiet symbol"),
]
MULTI: list[Scenario] = [
    # The default 20 ms flush coalesces 100 ticks/s into at most 50 updates/s per symbol and connection.
    replace(FULL[0], name="firehose-5ms", flush_ms=5.0),
    replace(FULL[0], name="firehose-2w", workers=2),
    replace(FULL[1], name="crowd-2w", workers=2),
    # Issue 12: the fan-out with tokens (all real-time), then with half the subscribers delayed. The
    # 2 s delay lets delayed quotes reach the clients within the window; latency figures cover the
    # real-time connections only (a delayed quote arrives about the delay after its t).
    replace(FULL[1], name="crowd-jwt", auth="jwt"),
    replace(FULL[1], name="crowd-delayed", auth="jwt", delayed_share=0.5, delay=2.0),
    # Issue 14: the crowd with bars next to quotes, each connection following the bars of two of its
    # symbols at 1s and 1m: what bars add to the fan-out's CPU per update.
    replace(FULL[1], name="crowd-bars", bars=4),
    # Issue 16: the bytes on the wire with changed-fields deltas (against broad), and the server's CPU per
    # delivered update when every subscription asks for at most one entry per second (against crowd and
    # firehose; crowd ticks once a second already, firehose a hundred times).
    replace(FULL[2], name="broad-delta", delta=True),
    replace(FULL[1], name="crowd-1hz", max_hz=1.0),
    replace(FULL[0], name="firehose-1hz", max_hz=1.0),
    # Issue 18: broad at 1,000 connections (at every size but smoke), the medium load where a flush finds only
    # one or two updates per connection: what each frame costs.
    replace(FULL[2], name="medium", conns=1_000),
]
ISSUE16 = ("broad-delta", "crowd-1hz", "firehose-1hz")


def _shrink(s: Scenario, conns: int, rate: float, warmup: float, window: float, loadgens: int) -> Scenario:
    # Delayed quotes start flowing --delay after the subscriptions: the window starts later.
    warmup = max(warmup, s.delay + 0.5) if s.delay is not None else warmup
    return replace(s, conns=conns, rate=rate, warmup=warmup, window=window, loadgens=loadgens)


def scenarios(sizes: str = "full") -> list[Scenario]:
    """All scenarios for ``sizes`` in run order ("full", "quick" or "smoke")."""
    base = FULL + MULTI
    if sizes == "full":
        return base
    if sizes == "quick":
        conns = {"firehose": 20, "crowd": 1_000, "broad": 200, "idle": 1_000, "medium": 1_000}
        # A 2 s window needs the quiet symbol to tick at least once: 1 tick/s instead of 0.1.
        return [
            _shrink(s, conns[s.name.split("-")[0]], max(s.rate, 1.0), 0.5, 2.0, 2)
            for s in base
            if not s.ours_only
            or s.name in ("firehose-2w", "crowd-jwt", "crowd-delayed", "crowd-bars", *ISSUE16)
        ]
    if sizes == "smoke":
        conns = {"firehose": 4, "crowd": 50, "broad": 20, "idle": 50, "medium": 20}
        rates = {"firehose": 20.0, "crowd": 2.0, "broad": 5.0, "idle": 2.0, "medium": 5.0}
        return [
            _shrink(s, conns[s.name.split("-")[0]], rates[s.name.split("-")[0]], 0.3, 1.0, 1)
            for s in base
            if not s.ours_only or s.name in ("crowd-bars", *ISSUE16)
        ]
    raise ValueError(f"unknown sizes {sizes!r}")
