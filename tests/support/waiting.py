"""Waiting in tests, always bounded: for a condition, for counts to settle, on a task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

T = TypeVar("T")


@asynccontextmanager
async def background(coro: Coroutine[Any, Any, T]) -> AsyncIterator[asyncio.Task[T]]:
    """A task that is cancelled (if still running) and awaited on the way out, come what may."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def eventually(predicate: Callable[[], bool], *, within: float) -> bool:
    """Poll ``predicate()`` until true or ``within`` seconds have passed; the last answer."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return bool(predicate())
        await asyncio.sleep(0.02)
    return True


async def settled(read: Callable[[], T], *, within: float = 10) -> T:
    """What ``read()`` gives once it has not moved for half a second (earlier tests may
    still be winding down), or after ``within`` seconds."""
    last = read()
    stable_since = time.monotonic()
    deadline = stable_since + within
    while time.monotonic() - stable_since < 0.5 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now = read()
        if now != last:
            last, stable_since = now, time.monotonic()
    return last
