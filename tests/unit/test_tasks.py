"""cancel_and_wait ends a task even when one cancellation is lost (Python 3.11's wait_for race)."""

from __future__ import annotations

import asyncio

import pytest

from ticker.tasks import cancel_and_wait


async def _loses_the_first_cancel(ticks: list[int]) -> None:
    """A reconnect loop whose first cancellation is swallowed, as asyncio.wait_for can on 3.11."""
    swallowed = False
    while True:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed = True
        ticks.append(1)


async def test_a_task_that_swallows_one_cancel_still_ends() -> None:
    ticks: list[int] = []
    task = asyncio.create_task(_loses_the_first_cancel(ticks))
    await asyncio.sleep(0.03)
    await asyncio.wait_for(cancel_and_wait(task, retry=0.05), 2.0)
    assert task.cancelled()


async def test_a_single_cancel_would_have_hung() -> None:
    task = asyncio.create_task(_loses_the_first_cancel([]))
    await asyncio.sleep(0.03)
    task.cancel()
    with pytest.raises(TimeoutError):  # the naive cancel-then-await never returns
        await asyncio.wait_for(asyncio.shield(task), 0.3)
    await cancel_and_wait(task)


async def test_none_and_finished_tasks_and_errors(caplog: pytest.LogCaptureFixture) -> None:
    await cancel_and_wait(None)

    async def fails() -> None:
        raise ValueError("boom")

    task = asyncio.create_task(fails())
    await asyncio.wait({task})
    await cancel_and_wait(task)  # ended with an error: logged, not raised
    assert "boom" in caplog.text
