"""What the tests and the bench read from the local machine: free TCP ports, a port that accepts, memory, CPU."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from tests.support.timing import eventually_sync


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accepts(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port`` now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, within: float) -> bool:
    """Wait up to ``within`` seconds (scaled) until something accepts on 127.0.0.1:``port``."""
    try:
        return eventually_sync(lambda: accepts(port), within, f"127.0.0.1:{port} to accept")
    except AssertionError:
        return False


def rss_kib(pids: list[int]) -> int:
    """Summed resident set size of ``pids`` in KiB (Linux ``/proc/PID/status``; gone processes count 0)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process ``pid`` has used so far, in seconds (Linux ``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_files_limit(pid: int) -> tuple[int, int]:
    """The soft and hard ``RLIMIT_NOFILE`` of the process ``pid`` (Linux ``/proc/PID/limits``)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise RuntimeError(f"no open-files limit in /proc/{pid}/limits")


def open_idle_sockets(port: int, n: int, into: list[socket.socket], host: str = "127.0.0.1") -> None:
    """Start ``n`` TCP connects to ``port`` that never send anything (the kernel queues what is not
    accepted), appending them to ``into`` (the ``flood`` fixture closes them)."""
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, port))
        into.append(s)
