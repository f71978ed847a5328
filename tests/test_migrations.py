"""The migrations go up from nothing, all the way down, and up again."""

from __future__ import annotations

import asyncio

from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from storyline.persistence.engine import sqlalchemy_url
from storyline.persistence.migrate import alembic_config, migrate
from tests.support.databases import create_database


async def tables(url: str) -> set[str]:
    engine = create_async_engine(sqlalchemy_url(url))
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
            return {row[0] for row in rows}
    finally:
        await engine.dispose()


async def test_up_down_and_up_again(server_url: str) -> None:
    url = await create_database(server_url)
    await asyncio.to_thread(migrate, url)
    assert {"accounts", "projects", "ledger"} <= await tables(url)
    await asyncio.to_thread(command.downgrade, alembic_config(url), "base")
    assert await tables(url) == {"alembic_version"}
    await asyncio.to_thread(migrate, url)
    assert {"accounts", "projects", "ledger"} <= await tables(url)
