"""``ticker record --out FILE``: its options, and recording any feed's normalized quotes for ``--feed replay``.

The running machinery (asyncio, the feeds) loads when the command runs, not when the command line is built.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from feeds.options import FeedOptions
from feeds.registry import feed_option
from ticker.options import ProcessOptions, nested, option

STOP_TIMEOUT = 5.0  # seconds the feeds get to stop before the file is closed
NOTHING_RECORDED = 1  # the exit status when the run ended with no quote written (2: a bad option or file)


@dataclass(frozen=True, slots=True)
class RecordConfig:
    """Everything ``ticker record`` can be told, typed."""

    out: str | None = option(None, "file to write (.gz: gzip-compressed)", env="RECORD_OUT")
    duration: float = option(
        0.0, "seconds to record; 0 = until SIGINT/SIGTERM (0)", env="RECORD_DURATION", parse=float
    )
    feeds: list[str] = feed_option(["simulated"], "default: simulated")
    feed_options: FeedOptions = nested(
        FeedOptions,
        help={"symbols": "comma-separated symbols to demand from the feeds (default: about 30 US tickers)"},
    )
    process: ProcessOptions = nested(ProcessOptions)

    def __post_init__(self) -> None:
        if not self.out:
            raise ValueError("record needs --out FILE")


async def run_record(config: RecordConfig) -> int:
    """Record ``config.feeds`` for their ``--symbols`` into ``config.out``; returns the exit status.

    Runs for ``config.duration`` seconds (0: until SIGINT/SIGTERM). Progress and the summary go to stderr.
    Exits 0 with at least one quote written, :data:`NOTHING_RECORDED` (1) with none, 2 for a bad option or file.
    """
    import asyncio
    import collections
    import contextlib
    import signal
    import time

    from feeds.base import FeedContext
    from feeds.recording.recorder import Recorder
    from feeds.registry import create_feeds
    from feeds.runner import FeedRunner

    out = str(config.out)
    symbols = config.feed_options.symbols
    try:
        feeds = create_feeds(config.feeds, config.feed_options)
    except ValueError as exc:
        print(f"ticker record: {exc}", file=sys.stderr)
        return 2
    recorder = Recorder(out, config.feeds, symbols)
    try:
        await recorder.open()
    except OSError as exc:
        print(f"ticker record: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    errors: collections.Counter[str] = collections.Counter()
    context = FeedContext(emit=recorder.record, error=lambda kind: errors.update((kind,)))
    runner = FeedRunner(feeds, lambda feed: context, load_reference=False)  # no directory: no provider calls
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    t0 = time.monotonic()
    code = 0
    try:
        await runner.start(lambda: symbols)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=config.duration if config.duration > 0 else None)
    except (ValueError, OSError) as exc:
        print(f"ticker record: {exc}", file=sys.stderr)
        code = 2
    finally:
        await runner.stop(within=STOP_TIMEOUT)
        await recorder.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    took = time.monotonic() - t0
    extra = f", {recorder.dropped} dropped" if recorder.dropped else ""
    errs = f", upstream errors: {dict(errors)}" if errors else ""
    print(
        f"ticker record: {recorder.written} quotes of {len(recorder.symbols_seen)} symbols in {took:.1f}s "
        f"written to {out}{extra}{errs}",
        file=sys.stderr,
    )
    if code == 0 and recorder.written == 0:  # an empty recording is a failure a script must see
        print(f"ticker record: no quotes were recorded (exit status {NOTHING_RECORDED})", file=sys.stderr)
        return NOTHING_RECORDED
    return code
