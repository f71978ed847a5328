"""Databases of their own for tests, on the PostgreSQL server the ``server_url`` fixture gives;
and a restart of an embedded server (also the chaos harness's)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from storyline.persistence.engine import sqlalchemy_url
from storyline.persistence.listener import CHANNELS
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


# What pg_stat_activity shows as a Storyline listener's query until its first keepalive:
# the LISTEN of the last of its channels.
STORYLINE_LISTEN = f'LISTEN "{CHANNELS[-1]}"'


async def backends(
    control: asyncpg.Connection,
    *,
    application_name: str | None = None,
    database: str | None = None,
    query: str | None = None,
) -> list[int]:
    """The pids of the server's backends that match every condition given."""
    rows = await control.fetch(
        """
        SELECT pid FROM pg_stat_activity
        WHERE pid <> pg_backend_pid()
          AND ($1::text IS NULL OR application_name = $1)
          AND ($2::text IS NULL OR datname = $2)
          AND ($3::text IS NULL OR query = $3)
        """,
        application_name,
        database,
        query,
    )
    return [row["pid"] for row in rows]


async def the_backend(control: asyncpg.Connection, *, within: float = 10, **where: str) -> int:
    """The one backend matching ``where``, waiting (bounded) until there is exactly one."""

    async def one() -> int:
        while True:
            found = await backends(control, **where)
            if len(found) == 1:
                return found[0]
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(one(), within)


def database_name(database_url: str) -> str:
    return database_url.rsplit("/", 1)[1].split("?")[0]


def restart_postgres(server: Any) -> None:
    """``pg_ctl restart`` with the options pgserver started it with (its socket directory)."""
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # set by setattr
    from pgserver.utils import PostmasterInfo

    pgdata = Path(server.pgdata)
    socket_dir = server.get_postmaster_info().socket_dir
    assert socket_dir is not None
    assert f'"-k" "{socket_dir}"' in (pgdata / "postmaster.opts").read_text()
    try:
        pg_ctl(
            [
                *("-w", "-t", "30", "-m", "fast", "-l", str(pgdata / "log")),
                *("-o", '-h ""', "-o", f"-k {socket_dir}", "restart"),
            ],
            pgdata=pgdata,
            user=server.system_user,
            timeout=40,
        )
    finally:
        # pgserver's handle must know the new postmaster to stop it at cleanup.
        server._postmaster_info = PostmasterInfo.read_from_pgdata(pgdata)
    assert server.get_postmaster_info().socket_dir == socket_dir
