"""Run a command on a pseudo-terminal, as a user at a terminal would, and read what it draws."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
from collections.abc import Callable, Sequence

from tests.support.timing import eventually_sync, timeout

_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str) -> str:
    """``text`` without terminal control codes."""
    return _CONTROL.sub("", text)


def run_on_terminal(
    argv: Sequence[str],
    until: Callable[[str], bool],
    within: float = 15.0,
    size: tuple[int, int] = (40, 120),
) -> tuple[int, str]:
    """Run ``argv`` on a ``size`` (rows, columns) terminal until ``until(plain text so far)`` holds (or
    ``within`` seconds, scaled, pass), then Ctrl-C it; return its exit status and everything it wrote
    (control codes included). Assert on the text afterwards: it says what is missing."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "TERM")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    out = b""

    def read() -> bool:
        """Read what is there (waiting briefly); True once the terminal is closed (every writer exited)."""
        nonlocal out
        if not select.select([master], [], [], 0.05)[0]:
            return False
        try:
            chunk = os.read(master, 65536)
        except OSError:
            return True
        out += chunk
        return not chunk

    try:
        with contextlib.suppress(AssertionError):  # the caller's checks say what is missing
            eventually_sync(
                lambda: read() or until(plain(out.decode(errors="replace"))), within, "the screen", interval=0
            )
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        # Keep reading while it shuts down, as a terminal does: a full pty would block its last redraws.
        eventually_sync(lambda: read() and proc.poll() is not None, 10, "the command to exit", interval=0)
        status = proc.wait(timeout(1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return status, out.decode(errors="replace")
