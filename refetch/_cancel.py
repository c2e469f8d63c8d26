"""The one place that knows redis-py can lose a cancellation (redis/redis-py#2028).

redis-py 8.1 returns normally from a command whose task was cancelled meanwhile: most
cancellations that land mid-command are lost. Two sides guard against it: the task itself
(``still_running()`` after a driver call: a task with a pending cancel request must not
carry on), and its owner (``cancel_until_gone()``: cancel again, and never wait for ever on
a driver).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


def still_running() -> None:
    """Raise the cancellation a driver swallowed, if the current task was cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_until_gone(
    tasks: Iterable[asyncio.Task[Any]], grace: float, first_wait: float = 0.5
) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait; cancel again (ten rounds within ``grace``) while some
    run on. Returns the tasks that ignored every cancellation (left behind)."""
    pending = set(tasks)
    for attempt in range(10):
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=grace / 10 if attempt else first_wait)
        if not pending:
            break
    return pending
