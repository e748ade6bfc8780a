"""Profiles of ticker under a scenario: py-spy sampling during the measured window, summarized.

``make bench PROFILE=1 [SCENARIO=...]`` runs ticker only, with ``py-spy record`` attached for the
window (non-blocking sampling; the figures of such a run carry its overhead, so they are kept out
of docs/performance.md). The summary lists where the samples were: own time per function and
the time under each of ticker's own functions.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def py_spy() -> str | None:
    """The py-spy executable of this environment, if installed (the ``bench`` extra)."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path, native: bool = False) -> subprocess.Popen[bytes] | None:
    """Start sampling ``pid`` (and its subprocesses) for ``seconds`` into ``out`` (collapsed stacks)."""
    exe = py_spy()
    if exe is None:
        return None
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", "250"]
    cmd += ["--format", "raw", "--output", str(out), "--subprocesses"]
    # Native: C frames too (uvloop, orjson, the send syscall); py-spy must pause the process for them.
    cmd.append("--native" if native else "--nonblocking")
    log = out.with_suffix(".py-spy.log").open("w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def _frame_name(frame: str) -> str:
    """``func (path/file.py:123)`` → ``func (path/file.py)``: lines merged per function."""
    head, _, rest = frame.partition(" (")
    return f"{head} ({rest.rsplit(':', 1)[0]})" if rest else head


def summarize(raw: Path, top: int = 15) -> dict[str, Any]:
    """Own ("self") and inclusive sample shares per function from py-spy's collapsed output."""
    if not raw.exists():
        log = raw.with_suffix(".py-spy.log")
        return {
            "samples": 0,
            "own": [],
            "inclusive": [],
            "error": log.read_text()[-500:] if log.exists() else "",
        }
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if total == 0:
        return {"samples": 0, "own": [], "inclusive": []}

    def share(c: Counter[str], keep: Any) -> list[tuple[str, float]]:
        return [(n, round(v / total * 100, 1)) for n, v in c.most_common() if keep(n)][:top]

    ours = ("ticker/", "feeds/", "tornado/", "uvloop", "asyncio/", "orjson", "prometheus_client/")
    return {
        "samples": total,
        "own": share(own, lambda n: True),
        "inclusive": share(inclusive, lambda n: any(k in n for k in ours) and "runners.py" not in n),
    }


def render(name: str, summary: dict[str, Any]) -> str:
    """A text block for the log and the report."""
    lines = [f"profile of ticker under {name}: {summary['samples']} samples"]
    lines.append("  own time (leaf frame):")
    lines += [f"    {pct:5.1f} %  {fn}" for fn, pct in summary["own"]]
    lines.append("  inclusive time (frame anywhere on the stack):")
    lines += [f"    {pct:5.1f} %  {fn}" for fn, pct in summary["inclusive"]]
    return "\n".join(lines)
