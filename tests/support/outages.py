"""A Storyline whose listener a test cuts off, and its readiness as /readyz reports it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from tests.support.client import UPSTREAM_TOKEN, Api
from tests.support.databases import (
    STORYLINE_LISTEN,
    database_name,
    migrated_database,
    the_backend,
)
from tests.support.servers import storyline


@asynccontextmanager
async def listener_outage(
    control: asyncpg.Connection, database_url: str, killed: int
) -> AsyncIterator[None]:
    """The listener's backend ``killed`` terminated, and no connection to its database
    admitted until the block ends: whatever is written meanwhile (on connections opened
    before) is notified to nobody. ``control``: a connection to another database."""
    name = database_name(database_url)
    await control.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        assert await control.fetchval("SELECT pg_terminate_backend($1)", killed)
        yield
    finally:
        await control.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


@dataclass(frozen=True)
class Listened:
    """A Storyline on a database of its own (``api``), and what cuts its listener off."""

    api: Api
    database_url: str
    control: asyncpg.Connection  # in the server's "postgres" database
    writer: asyncpg.Connection  # opened before any outage: it writes while nobody listens
    listening: int  # the listener's backend, found right after start-up

    def outage(self) -> AbstractAsyncContextManager[None]:
        """The listener's connection killed; none admitted until the block ends."""
        return listener_outage(self.control, self.database_url, self.listening)

    async def listener_backend(self) -> int:
        """The listener's backend now (after an outage: the one it reconnected on)."""
        name = database_name(self.database_url)
        return await the_backend(self.control, database=name, query=STORYLINE_LISTEN)


@asynccontextmanager
async def listened_storyline(server_url: str, upstream_url: str) -> AsyncIterator[Listened]:
    """Storyline in front of the video service at ``upstream_url``, on a new database on the
    server at ``server_url``."""
    database = await migrated_database(server_url)
    control = await asyncpg.connect(server_url)
    writer = await asyncpg.connect(database)
    try:
        async with storyline(
            database, upstream_url=upstream_url, upstream_token=UPSTREAM_TOKEN
        ) as api:
            # Found right after startup: a keepalive query later replaces the LISTEN text.
            listening = await the_backend(
                control, database=database_name(database), query=STORYLINE_LISTEN
            )
            yield Listened(api, database, control, writer, listening)
    finally:
        await writer.close()
        await control.close()


async def readiness(api: Api) -> tuple[int, dict[str, Any]]:
    """/readyz's status code and body."""
    response = await api.http.get("/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def wait_for_readiness(api: Api, status: int, seconds: float) -> dict[str, Any]:
    """/readyz's body, once it answers ``status`` (within ``seconds``)."""

    async def poll() -> dict[str, Any]:
        while True:
            code, body = await readiness(api)
            if code == status:
                return body
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), seconds)
