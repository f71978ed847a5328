"""Storyline in an event loop of its own thread, for synchronous drivers (hypothesis,
schemathesis) that must not block the loop serving the requests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storyline.persistence.engine import sqlalchemy_url
from tests.support.client import Api
from tests.support.databases import migrated_database
from tests.support.fakes import FakeVideoService
from tests.support.servers import serving, storyline

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class World:
    """Storyline on a database of its own, in front of a fake video service."""

    def __init__(self, server_url: str, **settings: Any) -> None:
        self.loop = LoopThread()
        self.stack = AsyncExitStack()
        self.fake = FakeVideoService(hang_seconds=0.3)
        self.api, self.engine = self.loop.run(self._start(server_url, settings))

    async def _start(self, server_url: str, settings: dict[str, Any]) -> tuple[Api, AsyncEngine]:
        url = await migrated_database(server_url)
        upstream = await self.stack.enter_async_context(serving(self.fake.app))
        self.settings = {"upstream_url": upstream, **settings}
        self.database_url = url
        api = await self.stack.enter_async_context(storyline(url, **self.settings))
        self.fake.api = api
        engine = create_async_engine(sqlalchemy_url(url))
        self.stack.push_async_callback(engine.dispose)
        return api, engine

    def another(self) -> Api:
        """One more instance on the same database, configured alike; the fake video
        service still reports to the first."""
        return self.loop.run(
            self.stack.enter_async_context(storyline(self.database_url, **self.settings))
        )

    def close(self) -> None:
        self.loop.run(self.stack.aclose())
        self.loop.close()
