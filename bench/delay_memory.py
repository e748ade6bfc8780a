"""Memory and CPU of the delayed tier's :class:`ticker.delay.DelayLine` (issue 12), on a simulated clock.

``python -m bench.delay_memory [--symbols 1000] [--rate 10] [--delay 900] [--seconds S]`` drives one line
as the server does (:class:`ticker.server.fanout.Fanout`: every update of a recorded symbol goes to
``record()`` with the entry the hub has just encoded of it, ``encode_entry(quote, seq)``, and
``due()`` runs whenever the release timer, kept at ``next_due()``, says), with injected monotonic
and epoch clocks, so ``S`` simulated seconds (default ``delay + 60``: the line fills, then stays
full) take no sleeping. Each symbol ticks ``rate`` times per second at its own phase, with quotes
shaped like the simulated feed's (price, bid, ask, volume, previous close).

Two passes over the same updates: the first under :mod:`tracemalloc`, one update alive at a time
beside the line (what the line holds at the end, the encoded entries it keeps included, and the
peak, both above what was allocated before it was made; each symbol's newest entry is the hub's
own bytes object, 4 KiB from orjson, counted here though a server's hub holds it anyway), the
second without it for CPU time: ``record()`` and ``due()`` are timed with ``time.process_time``
over batches of one simulated second of updates, built before the timing. Each update is encoded
right before its ``record()``, as in the server (the bytes are fresh in the cache); the time the
encoding alone takes over the same batch is subtracted.
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain, islice

from ticker.delay import DelayLine
from ticker.quote import Quote, encode_entry

WALL0 = 1_800_000_000.0  # epoch seconds at monotonic 0 of the simulation


@dataclass(slots=True)
class Drive:
    """What one pass saw: updates recorded, quotes released, and the time (s) spent in each call."""

    records: int = 0
    dues: int = 0
    released: int = 0
    record_s: float = 0.0
    due_s: float = 0.0
    max_held: int = 0


Update = tuple[float, Quote, int]  # (monotonic time, quote, its q)


def updates(symbols: int, rate: float, seconds: float) -> Iterator[Update]:
    """Updates in time order: each symbol ticks ``rate`` times a second at its own phase."""
    names = [f"D{i:04d}" for i in range(symbols)]
    prev = [100.0 + i % 400 for i in range(symbols)]
    price = list(prev)
    volume = [0] * symbols
    step = 1.0 / rate
    seq = 0
    for n in range(math.ceil(seconds * rate)):
        base = n * step
        for i in range(symbols):
            now = base + i * step / symbols  # phases spread over the step
            p = price[i] = round(price[i] * (1.0 + ((n * 7 + i) % 11 - 5) * 1e-5), 2)
            volume[i] += 100
            ts_ms = int((WALL0 + now) * 1000)
            quote = Quote(names[i], p, ts_ms, p - 0.01, p + 0.01, volume[i], None, None, prev[i])
            seq += 1  # as the hub numbers them: one counter, so q has the digits of a busy node's
            yield now, quote, seq


def batched(it: Iterator[Update], size: int) -> Iterator[list[Update]]:
    """``it`` in lists of ``size`` (the CPU pass: quotes built before the timing)."""
    while batch := list(islice(it, size)):
        yield batch


def singly(it: Iterator[Update]) -> Iterator[list[Update]]:
    """``it`` one update at a time (the memory pass: no batch alive beside the line)."""
    for u in it:
        yield [u]


def drive(
    line: DelayLine, batches: Iterator[list[Update]], clock: Callable[[], float] | None = None
) -> Drive:
    """Feed ``batches`` to ``line`` as the server does, timing ``record()`` and ``due()`` with ``clock``
    (None: no timing)."""
    d = Drive()
    record, due = line.record, line.due
    timed = clock is not None
    if clock is None:
        clock = float  # returns 0.0
    release_at = math.inf  # the server's release timer (Fanout._release_at)
    for batch in batches:
        t_encode = 0.0
        if timed:  # what the encoding alone takes, subtracted below
            mark = clock()
            for _, quote, seq in batch:
                encode_entry(quote, seq)
            t_encode = clock() - mark
        t_due = 0.0
        mark = clock()
        for now, quote, seq in batch:
            encoded = encode_entry(quote, seq)  # the hub's entry of it
            if now >= release_at:  # the release timer fires
                t0 = clock()
                d.released += len(due(now))
                d.dues += 1
                nd = line.next_due()
                release_at = math.inf if nd is None else nd
                t_due += clock() - t0
            if record(quote, encoded, seq, now, WALL0 + now) < release_at:  # due earlier: the timer moves
                nd = line.next_due()
                release_at = math.inf if nd is None else nd
        d.record_s += clock() - mark - t_due - t_encode
        d.due_s += t_due
        d.records += len(batch)
        held = line.held()
        if held > d.max_held:
            d.max_held = held
    return d


def memory_pass(args: argparse.Namespace) -> tuple[DelayLine, Drive, int, int]:
    """(line, drive, bytes held at the end, peak bytes), both above what existed before the line."""
    symbols = [f"D{i:04d}" for i in range(args.symbols)]
    it = updates(args.symbols, args.rate, args.seconds)
    first = next(it)  # the generator's own state exists before the baseline
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    line = DelayLine(args.delay)
    line.keep(symbols, math.inf)
    d = drive(line, singly(chain([first], it)))
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return line, d, current - base, peak - base


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=1000, help="symbols received delayed (1000)")
    ap.add_argument("--rate", type=float, default=10.0, help="ticks per second per symbol (10)")
    ap.add_argument("--delay", type=float, default=900.0, help="the line's delay, seconds (900)")
    ap.add_argument("--seconds", type=float, default=None, help="simulated seconds (delay + 60)")
    ap.add_argument("--no-cpu", action="store_true", help="skip the second (CPU) pass")
    args = ap.parse_args(argv)
    if args.seconds is None:
        args.seconds = args.delay + 60.0

    line, mem, held_bytes, peak_bytes = memory_pass(args)
    held = line.held()
    bound = args.symbols * (math.ceil(args.delay) + 1)
    print(
        f"DelayLine, delay {args.delay:g} s: {args.symbols:,} delayed symbols × {args.rate:g} ticks/s, "
        f"{args.seconds:g} simulated seconds ({mem.records:,} updates recorded, {mem.released:,} released)"
    )
    print(f"  entries held at the end   {held:,} (most at once {mem.max_held:,}; bound {bound:,})")
    print(f"  bytes held (tracemalloc)  {held_bytes:,} ({held_bytes / 2**20:,.1f} MiB)")
    print(
        f"  bytes per entry           {held_bytes / held:,.0f}" if held else "  bytes per entry           –"
    )
    print(f"  peak (tracemalloc)        {peak_bytes:,} ({peak_bytes / 2**20:,.1f} MiB)")
    if args.no_cpu:
        return
    line = DelayLine(args.delay)
    line.keep([f"D{i:04d}" for i in range(args.symbols)], math.inf)
    per_second = args.symbols * max(1, round(args.rate))
    cpu = drive(line, batched(updates(args.symbols, args.rate, args.seconds), per_second), time.process_time)
    print(f"  CPU per record()          {cpu.record_s / cpu.records * 1e6:.2f} µs ({cpu.records:,} calls)")
    if cpu.dues:
        print(
            f"  CPU per due()             {cpu.due_s / cpu.dues * 1e6:.2f} µs ({cpu.dues:,} calls, "
            f"{cpu.due_s / max(cpu.released, 1) * 1e6:.2f} µs per quote released)"
        )


if __name__ == "__main__":
    main()
