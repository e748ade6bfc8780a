"""Process accounting from /proc: CPU ticks of a process tree, machine-wide CPU, time waiting for a CPU.

Free ports and RSS come from :mod:`tests.support.system` (shared with the tests).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may hold spaces; everything after the last ')' is space-separated.
    return raw[raw.rindex(")") + 2 :].split()


def tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds (utime + stime) of ``pids``, all threads included."""
    return sum(cpu_split(pids))


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds (utime, stime) of ``pids``, all threads included: the interpreter's and the
    kernel's share (a send's TCP work on loopback, the reader's wake-up, is system time)."""
    user = system = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            user += int(fields[11])  # utime, stime: fields 14 and 15 of stat
            system += int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle or iowait) since boot."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    vals = [int(v) for v in parts[:8]]
    return (sum(vals) - vals[3] - vals[4]) / CLK_TCK


def run_wait_seconds(pids: list[int]) -> float:
    """Seconds the threads of ``pids`` spent runnable but waiting for a CPU (/proc/PID/task/*/schedstat).

    A busy machine shows here: time the process wanted to run while other work held the cores.
    """
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
    return total / 1e9
