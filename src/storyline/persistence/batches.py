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

# A read asked for within BURST_RECENT seconds of the last one's end is part of a burst (a
# storm brings an instance hundreds of new subscriptions a second, one every few
# milliseconds): it waits BURST_WINDOW for more keys to join it, since a statement for
# thirty keys costs PostgreSQL and the instance little more than one for a single key, and
# each read is a checkout, a ping and a query. A first state in a burst is that much later;
# a key asked for when no read ran lately is read at once.
BURST_RECENT = 0.05
BURST_WINDOW = 0.025
# Seconds a read may take. Its callers fail then, and the keys asked for meanwhile are
# read next: one read stuck on a lost connection does not hold every new subscription.
READ_TIMEOUT = 10.0

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Batched(Generic[K, V]):
    """``get(key)``: the value ``read`` finds for the key (None when it finds none), read
    together with every other key asked for meanwhile, at most ``limit`` per read; in a
    burst (a read ended less than ``recent`` seconds ago), with those asked for within
    ``window`` seconds as well.

    A key is read after it was asked for: a caller that registered for changes before
    asking sees a state at least as new as any change it missed. A caller cancelled while
    it waits leaves the others' read alone; a read that fails, or takes longer than
    ``timeout`` seconds, fails only its own callers, and the next read is tried.
    """

    def __init__(
        self,
        read: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        *,
        limit: int = 500,
        timeout: float = READ_TIMEOUT,
        recent: float = BURST_RECENT,
        window: float = BURST_WINDOW,
    ) -> None:
        self._read = read
        self._limit = limit
        self._timeout = timeout
        self._recent = recent
        self._window = window
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._last_read = -math.inf  # when the last read ended (the loop's clock)
        self._closed = False

    async def get(self, key: K) -> V | None:
        if self._closed:
            raise RuntimeError("the reads are closed (the instance is shutting down)")
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._reader is None:
            # Started, not run: the keys asked for in this turn of the loop join the read. It
            # serves many callers, so it runs in none's context (trace, log fields).
            self._reader = asyncio.create_task(
                self._read_all(), name="storyline-batched-read", context=contextvars.Context()
            )
        return await future

    async def aclose(self) -> None:
        """Refuse new keys, and end the read under way (its callers are cancelled): before
        the database it reads from is closed."""
        self._closed = True
        reader = self._reader
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read_all(self) -> None:
        loop = asyncio.get_running_loop()
        batch: dict[K, list[asyncio.Future[V | None]]] = {}
        try:
            while self._waiting:
                bursting = loop.time() - self._last_read < self._recent
                if bursting and len(self._waiting) < self._limit:
                    await asyncio.sleep(self._window)
                keys = list(islice(self._waiting, self._limit))
                batch = {key: self._waiting.pop(key) for key in keys}
                wanted = [key for key, futures in batch.items() if live(futures)]
                if not wanted:
                    continue
                try:
                    async with asyncio.timeout(self._timeout):
                        found = await self._read(wanted)
                except asyncio.CancelledError:
                    if _cancelling():
                        raise  # the reader itself: shutdown
                    _fail(batch, RuntimeError("the read was cancelled"))
                    continue
                except Exception as error:
                    _fail(batch, error)  # each caller raises it in turn: one exception, shared
                    continue
                finally:
                    self._last_read = loop.time()
                _answer(batch, found)
        finally:
            self._reader = None
            # Only when the reader itself is cancelled (shutdown): nobody will answer these.
            _cancel(batch)
            _cancel(self._waiting)
            self._waiting.clear()


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _answer(batch: Mapping[K, list[asyncio.Future[V | None]]], found: Mapping[K, V]) -> None:
    for key, futures in batch.items():
        value = found.get(key)
        for future in futures:
            if not future.done():
                future.set_result(value)


def _fail(batch: Mapping[K, list[asyncio.Future[V | None]]], error: Exception) -> None:
    for futures in batch.values():
        for future in futures:
            if not future.done():
                future.set_exception(error)


def _cancel(batch: Mapping[K, list[asyncio.Future[V | None]]]) -> None:
    for futures in batch.values():
        for future in futures:
            future.cancel()  # a no-op on those already settled


def live(futures: list[asyncio.Future[V | None]]) -> bool:
    """Whether any caller still waits for this key."""
    return not all(future.done() for future in futures)
