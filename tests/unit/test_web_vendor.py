"""The page's vendored charting library (web/vendor/): the committed file is the version the lockfile pins,
it is shipped by the package with its licence, the page loads it and shows its attribution, and it needs
nothing the page's Content-Security-Policy forbids."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
VENDOR = WEB / "vendor"
LIBRARY = "lightweight-charts.standalone.production.js"


def lock() -> dict:
    return json.loads((VENDOR / "package-lock.json").read_text())


def test_the_vendored_file_is_the_version_the_lockfile_pins() -> None:
    head = (VENDOR / LIBRARY).read_text()[:400]
    match = re.search(r"TradingView Lightweight Charts™ v(\d+\.\d+\.\d+)", head)
    assert match, head
    locked = lock()["packages"]["node_modules/lightweight-charts"]
    assert match.group(1) == locked["version"]
    assert locked["license"] == "Apache-2.0"
    # package.json pins the exact version (no range), so `make vendor` reproduces the committed file.
    wanted = json.loads((VENDOR / "package.json").read_text())["dependencies"]
    assert wanted == {"lightweight-charts": locked["version"]}
    assert lock()["packages"][""]["dependencies"] == wanted


def test_the_lockfile_names_no_registry() -> None:
    """npm ci resolves against whichever registry npm is configured with."""
    for name, entry in lock()["packages"].items():
        assert "resolved" not in entry, name
        assert name == "" or entry["integrity"].startswith("sha512-"), name


def test_licence_and_notice_are_shipped_with_the_library() -> None:
    assert "Apache License" in (VENDOR / "LICENSE").read_text()[:200]
    notice = (VENDOR / "NOTICE").read_text()
    assert "TradingView Lightweight Charts™" in notice and "https://www.tradingview.com/" in notice
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    shipped = {p.strip() for p in cfg["options.data_files"]["share/ticker/web/vendor"].split(",")}
    assert shipped == {f"web/vendor/{p.name}" for p in VENDOR.iterdir() if p.is_file()}
    assert f"web/vendor/{LIBRARY}" in shipped


def test_the_page_loads_it_and_shows_the_attribution() -> None:
    assert f'"/static/vendor/{LIBRARY}"' in (WEB / "chart.js").read_text()
    html = (WEB / "index.html").read_text()
    assert '<a href="https://www.tradingview.com/"' in html
    assert "TradingView\n      Lightweight Charts™" in html or "TradingView Lightweight Charts™" in html
    assert "attributionLogo: true" in (WEB / "chart.js").read_text()


def test_it_needs_no_eval() -> None:
    """The page's CSP has no 'unsafe-eval': the library must not build code from strings."""
    code = (VENDOR / LIBRARY).read_text()
    assert not re.search(r"(?<![\w.$])eval\(|new Function\(|setTimeout\(\s*['\"]", code)
