"""Ending a background task for sure (pure: asyncio only, no I/O)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("ticker")


async def cancel_and_wait(task: asyncio.Task[Any] | None, retry: float = 0.1) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again every ``retry`` seconds.

    One cancel is not always enough on Python 3.11: ``asyncio.wait_for`` drops a cancellation that
    arrives just as the operation it waits for completes, and a reconnect loop that catches that
    operation's error then goes on as if nothing had happened. An error the task ended with is logged.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("task %s ended with %r", task.get_name(), exc)
