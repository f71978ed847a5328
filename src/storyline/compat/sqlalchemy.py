"""SQLAlchemy internals Storyline relies on, pinned by tests/compat/test_sqlalchemy.py.

- A compiled statement's ``bind_names`` (bind parameter -> its name in the SQL) and
  ``positiontup`` (the names in the order of asyncpg's ``$n``): to run a statement built
  with SQLAlchemy on asyncpg's own connection, compiled once.
- ``greenlet_spawn``, ``sync_engine.pool.connect`` and the pooled connection's
  ``driver_connection``, ``invalidate`` and ``close``: to take asyncpg's connection from
  the engine's pool without a SQLAlchemy ``Connection`` around it (one greenlet hand-off
  each way, where ``engine.connect()`` takes three), so that the pool, its pre-ping and
  its limits stay SQLAlchemy's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import greenlet_spawn

_ASYNCPG = asyncpg_dialect()  # type: ignore[no-untyped-call]
CHECKOUT_PAUSES = (0.05, 1.0)  # seconds


def compile_positional(
    statement: ClauseElement,
) -> tuple[str, tuple[str, ...], dict[str, object]]:
    """``statement`` as asyncpg takes it: its SQL (``$n`` parameters), the parameter names
    in ``$n`` order, and the values of the parameters the statement carries itself
    (literals SQLAlchemy made parameters of)."""
    compiled = cast("SQLCompiler", statement.compile(dialect=_ASYNCPG))
    constants = {
        name: bind.value for bind, name in compiled.bind_names.items() if not bind.required
    }
    return str(compiled), tuple(compiled.positiontup or ()), constants


@asynccontextmanager
async def pooled_driver_connection(
    engine: AsyncEngine, *, patience: float = 0.0
) -> AsyncIterator[asyncpg.Connection]:
    """A connection from ``engine``'s pool, as asyncpg's own connection.

    While PostgreSQL refuses connections (the pool's pre-ping found a pooled one dead and
    no new one is accepted: a restart), the checkout is tried again for up to ``patience``
    seconds. A connection that asyncpg found closed, or left inside a transaction (a
    ROLLBACK cut short by a second cancellation; the pool's reset on return knows only
    SQLAlchemy's own transactions), is invalidated, so that the pool does not hand it out
    again.
    """
    pooled = await _checkout(engine, patience)
    driver = pooled.driver_connection
    try:
        assert driver is not None, "a checked-out connection has its driver connection"
        yield driver
    finally:
        if driver is None or driver.is_closed() or driver.is_in_transaction():
            await greenlet_spawn(pooled.invalidate)
        await greenlet_spawn(pooled.close)


async def _checkout(engine: AsyncEngine, patience: float) -> PoolProxiedConnection:
    """The pool's checkout, tried again (pauses doubling from the first of
    ``CHECKOUT_PAUSES`` to the last) while it fails to connect, until ``patience`` runs out."""
    refused = (OSError, engine.dialect.loaded_dbapi.Error)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    pause, longest = CHECKOUT_PAUSES
    while True:
        try:
            pooled: PoolProxiedConnection = await greenlet_spawn(engine.sync_engine.pool.connect)
            return pooled
        except refused:
            if loop.time() + pause > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(longest, pause * 2)
