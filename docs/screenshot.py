"""Take the README's screenshot of the trader's page (docs/screenshot.png).

Starts ``ticker serve`` with the simulated feed on an ephemeral port, opens the page in the
system's headless Chromium and captures it once the sparklines have some history.

    .venv/bin/python docs/screenshot.py [--theme dark|light] [--width 1200] [--out docs/screenshot.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.support.pagekit import launch_chromium  # noqa: E402
from tests.support.serverproc import ServerProcess  # noqa: E402

SYMBOLS = "AAPL,MSFT,NVDA,AMZN,GOOGL,META,TSLA,BRK.B,JPM,KO,COST,SPY"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--theme", choices=("dark", "light"), default="dark")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=0, help="viewport height (default: fits the page)")
    ap.add_argument("--seconds", type=float, default=12.0, help="history to gather before the shot")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    args = ap.parse_args()
    server = ServerProcess(["--seed", "42", "--sim-rate", "4", "--log-level", "warning"])
    with server as srv, sync_playwright() as pw:
        browser = launch_chromium(pw)
        height = args.height or (700 if args.width >= 700 else 820)
        ctx = browser.new_context(
            viewport={"width": args.width, "height": height},
            color_scheme=args.theme,
            locale="en-US",
            timezone_id="America/New_York",
        )
        page = ctx.new_page()
        page.goto(f"{srv.url}/?symbols={SYMBOLS}")
        page.get_by_test_id("conn-status").and_(page.locator("[data-state=connected]")).wait_for()
        page.wait_for_timeout(args.seconds * 1000)
        page.get_by_role("button", name="Change %").click()  # show a sort in action
        page.get_by_test_id("symbol-input").fill("nflx")
        page.wait_for_timeout(400)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
