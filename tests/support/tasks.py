"""The tasks a test started that are still alive: what a leak leaves behind."""

from __future__ import annotations

import asyncio


def kind(task: asyncio.Task[object]) -> str:
    return str(getattr(task.get_coro(), "__qualname__", ""))


def started_since(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """The tasks alive now that were not in ``before``, but for kinds already there (an
    instance's own waits start anew now and then). Counting tasks instead would let an
    earlier test's task that ends meanwhile hide one this test left, or fail for it."""
    kinds = {kind(task) for task in before}
    return {task for task in asyncio.all_tasks() - before if kind(task) not in kinds}
