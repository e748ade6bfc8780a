"""The page's files (web/): every one is shipped by the package and used by the page, without a browser."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "web"


def test_every_page_file_is_referenced_and_packaged() -> None:
    """A non-editable ``pip install .`` ships every file of web/, and the page only loads files that exist."""
    cfg = configparser.ConfigParser()
    cfg.read(WEB.parent / "setup.cfg")
    shipped = {Path(p.strip()).name for p in cfg["options.data_files"]["share/ticker/web"].split(",")}
    on_disk = {p.name for p in WEB.iterdir() if p.is_file()}
    assert shipped == on_disk
    html = (WEB / "index.html").read_text()
    loaded = set(re.findall(r'(?:src|href)="/static/([^"]+)"', html))
    for js in WEB.glob("*.js"):
        loaded |= set(re.findall(r'from "\./([^"]+)"', js.read_text()))
    assert loaded <= on_disk
    assert on_disk - loaded == {"index.html"}  # nothing shipped that the page does not use
