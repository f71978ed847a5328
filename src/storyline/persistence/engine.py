"""The database URL, the engine, and the driver path for generateStory's statements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import greenlet_spawn

# libpq's spellings (what operators write) and SQLAlchemy's (what its users write).
POSTGRES_SCHEMES = ("postgresql", "postgres")


def sqlalchemy_url(url: str) -> URL:
    """A PostgreSQL URL in any common spelling (``postgresql://``, ``postgres://``,
    ``postgresql+asyncpg://``) as SQLAlchemy's asyncpg URL."""
    parsed = make_url(url)
    if parsed.drivername.partition("+")[0] not in POSTGRES_SCHEMES:
        raise ValueError("the database URL must be a postgresql:// URL")
    return parsed.set(drivername="postgresql+asyncpg")


def driver_url(url: str) -> str:
    """The same URL as asyncpg takes it (libpq's form), for connections outside the pool."""
    target = sqlalchemy_url(url).set(drivername="postgresql")
    return target.render_as_string(hide_password=False)


def create_engine(url: str, *, pool_size: int) -> AsyncEngine:
    target = sqlalchemy_url(url)
    connect_args: dict[str, Any] = {}
    name = target.query.get("application_name")
    if isinstance(name, str):
        # libpq takes it in the URL, asyncpg as a server setting (it refuses the keyword).
        target = target.difference_update_query(["application_name"])
        connect_args["server_settings"] = {"application_name": name}
    return create_async_engine(
        target,
        # Every connection the pool opens stays open. With overflow connections, a burst
        # past pool_size paid for a connection (fork, authentication, statements prepared
        # again) that was closed as soon as it came back, then paid again at the next one
        # (generateStory at 32 clients: p99 168 -> 121 ms, 344 -> 365/s in paired runs).
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        connect_args=connect_args,
    )


_ASYNCPG = asyncpg_dialect()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A statement built with SQLAlchemy, compiled once for asyncpg (``$n`` parameters).

    ``arguments`` takes the named parameters; the values the statement carries itself
    (literals SQLAlchemy made parameters of) are filled in.
    """

    sql: str
    parameters: tuple[str, ...]
    constants: Mapping[str, object]

    @classmethod
    def of(cls, statement: ClauseElement) -> DriverStatement:
        compiled = cast("SQLCompiler", statement.compile(dialect=_ASYNCPG))
        constants = {
            name: bind.value for bind, name in compiled.bind_names.items() if not bind.required
        }
        return cls(str(compiled), tuple(compiled.positiontup or ()), constants)

    def arguments(self, values: Mapping[str, object]) -> list[object]:
        return [
            values[name] if name in values else self.constants[name] for name in self.parameters
        ]

    async def fetchrow(
        self, conn: asyncpg.Connection, values: Mapping[str, object]
    ) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await conn.fetchrow(self.sql, *self.arguments(values))
        return row

    async def fetchval(self, conn: asyncpg.Connection, values: Mapping[str, object]) -> Any:
        return await conn.fetchval(self.sql, *self.arguments(values))

    async def execute(self, conn: asyncpg.Connection, values: Mapping[str, object]) -> None:
        await conn.execute(self.sql, *self.arguments(values))


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A connection from the engine's pool, as asyncpg's own connection.

    generateStory and updateStatus run on it, the two mutations clients send at rate: through
    SQLAlchemy's execution layer (greenlet hand-offs, result processing) their statements
    cost the API process about twice the CPU they cost through asyncpg alone (measured by
    ``python -m bench.statements``). The pool, its pre-ping and its limits stay SQLAlchemy's;
    the connection is taken from the pool itself, without a SQLAlchemy Connection around it
    (one greenlet hand-off each way, where engine.connect() took three). A connection that
    asyncpg found closed, or left inside a transaction (a ROLLBACK cut short by a second
    cancellation; the pool's reset on return knows only SQLAlchemy's own transactions), is
    invalidated, so that the pool does not hand it out again.
    """
    pooled = await greenlet_spawn(engine.sync_engine.pool.connect)
    driver = pooled.driver_connection
    try:
        assert driver is not None, "a checked-out connection has its driver connection"
        yield driver
    finally:
        if driver is None or driver.is_closed() or driver.is_in_transaction():
            await greenlet_spawn(pooled.invalidate)
        await greenlet_spawn(pooled.close)


async def driver_of(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under ``conn``: statements on it run in ``conn``'s transaction
    once that has begun (SQLAlchemy sends BEGIN with the transaction's first statement)."""
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None, "a checked-out connection has its driver connection"
    return driver
