"""Databases of their own for tests, on the PostgreSQL server the ``server_url`` fixture gives."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from storyline.persistence.engine import sqlalchemy_url
from storyline.persistence.migrate import migrate


async def create_database(server_url: str) -> str:
    """A new, empty database on that server; returns its URL."""
    name = f"storyline_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def migrated_database(server_url: str) -> str:
    """A new database through the real migrations; returns its URL."""
    url = await create_database(server_url)
    await asyncio.to_thread(migrate, url)
    return url
