"""Reads by key that many callers ask for at once, made in one statement.

When an instance dies, its watchers reconnect to the others together, and each new
subscription first reads its project's row; so does every watcher when the listener comes
back (notifications may have been lost). One statement per watcher is a pool checkout, a
ping and a query each: PostgreSQL and the instance then spend more on round trips than on
the rows. ``Batched`` reads every key asked for while a read is under way in the next one,
so the statements follow the load (one at a time) and not the number of callers.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import Awaitable, Callable, Hashable, Mapping
from itertools import islice
from typing import Generic, TypeVar

# While reads follow one another (a storm), each waits this long for more keys to join it:
# a statement for ten keys costs PostgreSQL and the instance little more than one for two.
# A key asked for when no read ran lately is read at once.
BURST_WINDOW = 0.002

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Batched(Generic[K, V]):
    """``get(key)``: the value ``read`` finds for the key (None when it finds none), read
    together with every other key asked for meanwhile, at most ``limit`` per read.

    A key is read after it was asked for: a caller that registered for changes before
    asking sees a state at least as new as any change it missed. A caller cancelled while
    it waits leaves the others' read alone; a read that fails fails only its own callers.
    """

    def __init__(
        self, read: Callable[[list[K]], Awaitable[Mapping[K, V]]], *, limit: int = 500
    ) -> None:
        self._read = read
        self._limit = limit
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._last_read = -math.inf  # when the last read ended (the loop's clock)

    async def get(self, key: K) -> V | None:
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._reader is None:
            # Started, not run: the keys asked for in this turn of the loop join the read. It
            # serves many callers, so it runs in none's context (trace, log fields).
            self._reader = asyncio.create_task(
                self._read_all(), name="storyline-batched-read", context=contextvars.Context()
            )
        return await future

    async def _read_all(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                if (
                    len(self._waiting) < self._limit
                    and loop.time() - self._last_read < BURST_WINDOW
                ):
                    await asyncio.sleep(BURST_WINDOW)
                keys = list(islice(self._waiting, self._limit))
                batch = {key: self._waiting.pop(key) for key in keys}
                wanted = [key for key, futures in batch.items() if live(futures)]
                if not wanted:
                    continue
                try:
                    found = await self._read(wanted)
                    self._last_read = loop.time()
                except asyncio.CancelledError:
                    for futures in batch.values():
                        for future in futures:
                            future.cancel()
                    raise
                except Exception as error:
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(error)
                    continue
                for key, futures in batch.items():
                    value = found.get(key)
                    for future in futures:
                        if not future.done():
                            future.set_result(value)
        finally:
            self._reader = None
            for futures in self._waiting.values():  # only when cancelled (shutdown)
                for future in futures:
                    future.cancel()
            self._waiting.clear()


def live(futures: list[asyncio.Future[V | None]]) -> bool:
    """Whether any caller still waits for this key."""
    return not all(future.done() for future in futures)
