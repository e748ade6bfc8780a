"""Server memory under clients that never read (issue 17), on loopback.

``python -m bench.slow_readers [--clients 500] [--symbols 100] [--sim-rate 10] [--hold 15] [--after 15]
[-- SERVE_ARGS...]`` starts ``ticker serve`` (the simulated market over ``--symbols`` symbols), opens
``--clients`` WebSocket connections that subscribe to every symbol and never read (a 4 KiB receive
buffer), holds them ``--hold`` seconds, closes them all, and waits ``--after`` seconds. It prints the
server's RSS before, at its peak while they were open, at the end of the hold and after they went, with
the slow-consumer closes the server counted. Everything after ``--`` goes to ``ticker serve``.
"""

from __future__ import annotations

import argparse
import resource
import socket
import time

from tests.support.serverproc import ServerProcess, scrape
from tests.support.wsclient import stalled_client


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def _poll(srv: ServerProcess, seconds: float, peak: int) -> tuple[int, int]:
    """Sample RSS every 0.25 s for ``seconds``; return (last, peak)."""
    end = time.monotonic() + seconds
    last = srv.rss_kib()
    while time.monotonic() < end:
        time.sleep(0.25)
        last = srv.rss_kib()
        peak = max(peak, last)
    return last, peak


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=500, help="never-reading connections (500)")
    ap.add_argument("--symbols", type=int, default=100, help="symbols each subscribes to (100)")
    ap.add_argument("--sim-rate", type=float, default=10.0, help="ticks per second per symbol (10)")
    ap.add_argument("--hold", type=float, default=15.0, help="seconds the clients stay (15)")
    ap.add_argument("--after", type=float, default=15.0, help="seconds to watch after they close (15)")
    ap.add_argument("serve", nargs="*", help="extra `ticker serve` arguments (after --)")
    args = ap.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    symbols = [f"S{i:03d}" for i in range(1, args.symbols + 1)]
    serve = ["--symbols", ",".join(symbols), "--sim-rate", str(args.sim_rate), "--seed", "1"]
    serve += ["--log-level", "warning", *args.serve]
    with ServerProcess(serve) as srv:
        time.sleep(2.0)  # the market warms up
        base = srv.rss_kib()
        socks: list[socket.socket] = []
        t0 = time.monotonic()
        for _ in range(args.clients):
            socks.append(stalled_client(srv.port, symbols))
        opened = time.monotonic() - t0
        last, peak = _poll(srv, args.hold, base)
        during = scrape(srv.url)
        for s in socks:
            s.close()
        gone_at = time.monotonic()
        after, peak = _poll(srv, args.after, peak)
        m = scrape(srv.url)
        print(f"ticker serve {' '.join(args.serve) or '(defaults)'}")
        print(
            f"  {args.clients} never-reading clients × {args.symbols} symbols at {args.sim_rate:g}/s "
            f"(opened in {opened:.1f} s), held {args.hold:g} s, watched {args.after:g} s after"
        )
        print(f"  RSS before                {_mib(base)}")
        print(
            f"  RSS peak                  {_mib(peak)}  (+{(peak - base) / max(args.clients, 1):,.0f} KiB a client)"
        )
        print(f"  RSS end of hold           {_mib(last)}")
        print(f"  RSS {time.monotonic() - gone_at:4.0f} s after close    {_mib(after)}")
        for key in ("ticker_slow_consumer_disconnects_total", "ticker_buffered_bytes"):
            if key in during or key in m:
                print(f"  {key:<40} during {during.get(key, 0):,.0f}  after {m.get(key, 0):,.0f}")


if __name__ == "__main__":
    main()
