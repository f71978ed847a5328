"""broadcaster's stock Postgres backend and Storyline's hub behind one interface, so that a
test can try the same thing on both (tests/test_listener.py).

Stock channels are private names; Storyline's notifications go on the trigger's one channel
with the trigger's JSON payload, routed by project id.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from broadcaster import Broadcast
from broadcaster._backends.postgres import PostgresBackend

from storyline.live.hub import Mailbox, ProjectBroadcast
from storyline.persistence.listener import CHANNEL, PostgresListener

STOCK = "stock"
STORYLINE = "storyline"
SIDES = [STOCK, STORYLINE]

WAIT = 3.0  # the bound of a wait for something that must happen
SILENCE = 2.0  # how long stock is given to show that something never happens
CONNECTING = "storyline-listener"  # the name of PostgresListener's supervisor task
ROUTING = "storyline-router"  # the name of ProjectBroadcast's routing task


class Inbox(ABC):
    """One subscriber's deliveries, as the versions of the events it receives."""

    resyncs = 0  # how often the hub said "notifications may have been lost" (stock: never)

    @abstractmethod
    async def next(self) -> int: ...


class Hub(ABC):
    def __init__(self, url: str) -> None:
        self.url = url

    @abstractmethod
    def new_key(self) -> str: ...

    @abstractmethod
    def subscribe(self, key: str) -> AbstractAsyncContextManager[Inbox]: ...

    @abstractmethod
    async def _send(self, connection: Any, key: str, version: int) -> None: ...

    async def notify(self, key: str, version: int) -> None:
        """Notify from a connection of its own, as another process would."""
        connection = await asyncio.wait_for(asyncpg.connect(self.url), WAIT)
        try:
            await self._send(connection, key, version)
        finally:
            await connection.close()


class StockInbox(Inbox):
    def __init__(self, subscriber: Any) -> None:
        self._subscriber = subscriber

    async def next(self) -> int:
        event = await self._subscriber.get()
        return int(event.message)


class StockHub(Hub):
    def __init__(self, url: str, broadcast: Broadcast) -> None:
        super().__init__(url)
        self.broadcast = broadcast

    def new_key(self) -> str:
        return f"storyline_test_{uuid.uuid4().hex[:12]}"

    @asynccontextmanager
    async def subscribe(self, key: str) -> AsyncIterator[Inbox]:
        async with self.broadcast.subscribe(key) as subscriber:
            yield StockInbox(subscriber)

    async def _send(self, connection: Any, key: str, version: int) -> None:
        await connection.execute("SELECT pg_notify($1, $2)", key, str(version))


class StorylineInbox(Inbox):
    def __init__(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox

    async def next(self) -> int:
        while True:
            while (news := self._mailbox.news()) is not None:
                await news
            events, resync = self._mailbox.take()
            self.resyncs += resync
            if events:
                return events[-1].version


class StorylineHub(Hub):
    def __init__(self, url: str, broadcast: ProjectBroadcast) -> None:
        super().__init__(url)
        self.broadcast = broadcast

    def new_key(self) -> str:
        return str(uuid.uuid4())

    @asynccontextmanager
    async def subscribe(self, key: str) -> AsyncIterator[Inbox]:
        async with self.broadcast.subscribe(key) as mailbox:
            yield StorylineInbox(mailbox)

    async def _send(self, connection: Any, key: str, version: int) -> None:
        payload = {
            "id": key,
            "user_id": "someone",
            "xid": None,
            "status": "PROCESSING",
            "version": version,
            "progress": None,
            "stage": None,
            "error_message": None,
            "result_url": None,
            "truncated": False,
            "updated_at": datetime.now(UTC).isoformat(),
        }
        await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps(payload))


def with_application_name(url: str, name: str) -> str:
    """So that the listener's backend can be told apart in pg_stat_activity."""
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def stock_dsn(url: str) -> str:
    """The asyncpg DSN form that makes broadcaster pick its Postgres backend."""
    assert url.startswith("postgresql://"), url
    return "postgres://" + url.removeprefix("postgresql://")


@asynccontextmanager
async def stock_hub(url: str) -> AsyncIterator[Hub]:
    broadcast = Broadcast(stock_dsn(url))
    await asyncio.wait_for(broadcast.connect(), WAIT)
    try:
        yield StockHub(url, broadcast)
    finally:
        listener = broadcast._listener_task
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        backend = broadcast._backend
        assert isinstance(backend, PostgresBackend)
        try:
            await asyncio.wait_for(backend.disconnect(), WAIT)
        except Exception:
            backend._conn.terminate()
            raise


@asynccontextmanager
async def storyline_hub(url: str) -> AsyncIterator[Hub]:
    before = asyncio.all_tasks()
    broadcast = ProjectBroadcast(PostgresListener(url))
    await asyncio.wait_for(broadcast.connect(), WAIT)
    try:
        yield StorylineHub(url, broadcast)
    finally:
        await asyncio.wait_for(broadcast.disconnect(), WAIT)
        left = {task.get_name() for task in asyncio.all_tasks() - before}
        assert not left & {CONNECTING, ROUTING}, left


def open_hub(side: str, url: str) -> AbstractAsyncContextManager[Hub]:
    return stock_hub(url) if side == STOCK else storyline_hub(url)


async def first_arrival(hub: Hub, inbox: Inbox, key: str, *, version: int) -> int | None:
    """Notify a newer version every 0.2 s for up to SILENCE s; the first one received, if any."""
    receiving = asyncio.create_task(inbox.next())
    try:
        deadline = asyncio.get_running_loop().time() + SILENCE
        while asyncio.get_running_loop().time() < deadline:
            await hub.notify(key, version)
            done, _ = await asyncio.wait([receiving], timeout=0.2)
            if done:
                return receiving.result()
            version += 1
        return None
    finally:
        receiving.cancel()
        await asyncio.gather(receiving, return_exceptions=True)


def chain(error: BaseException) -> list[BaseException]:
    """The error and those it was raised while handling."""
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found
