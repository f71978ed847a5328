"""SQLAlchemy internals Storyline relies on, pinned by tests/compat/test_sqlalchemy.py.

- A compiled statement's ``bind_names`` (bind parameter -> its name in the SQL) and
  ``positiontup`` (the names in the order of asyncpg's ``$n``): to run a statement built
  with SQLAlchemy on asyncpg's own connection, compiled once.
- ``greenlet_spawn``, ``sync_engine.pool.connect`` and the pooled connection's
  ``driver_connection``, ``invalidate`` and ``close``: to take asyncpg's connection from
  the engine's pool without a SQLAlchemy ``Connection`` around it (one greenlet hand-off
  each way, where ``engine.connect()`` takes three), so that the pool and its limits stay
  SQLAlchemy's; the liveness check at checkout is this module's (``_ping``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import greenlet_spawn

_ASYNCPG = asyncpg_dialect()  # type: ignore[no-untyped-call]
CHECKOUT_PAUSES = (0.05, 1.0)  # seconds
# Pooled connections that did not answer, discarded before patience counts: each may be one
# that the server ended while it sat in the pool (as SQLAlchemy's own checkout retries).
DISCARDS = 3


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

    While PostgreSQL refuses connections (a pooled one did not answer and no new one is
    accepted: a restart), the checkout is tried again for up to ``patience``
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


def connection_failures(engine: AsyncEngine) -> tuple[type[Exception], ...]:
    """What a connection refused or lost raises: OSError (refused, reset, timed out),
    asyncpg's errors (a server refusing connections, a connection closed under a
    statement), the pool's DBAPI errors (SQLAlchemy's adaptation of asyncpg's), and
    DBAPIError: the pool's first connection runs the dialect's set-up queries through the
    engine, which wraps what the driver raised (a backend ended under them, say)."""
    return (
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        engine.dialect.loaded_dbapi.Error,
        DBAPIError,
    )


async def _checkout(engine: AsyncEngine, patience: float) -> PoolProxiedConnection:
    """The pool's checkout of a connection that answers, tried again (pauses doubling from
    the first of ``CHECKOUT_PAUSES`` to the last) while it fails, until ``patience`` runs
    out. A pooled connection that does not answer (PostgreSQL restarted, its backend was
    terminated, a proxy cut it) is discarded, and the next try connects anew."""
    refused = connection_failures(engine)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    pause, longest = CHECKOUT_PAUSES
    discarded = 0
    while True:
        try:
            pooled: PoolProxiedConnection = await greenlet_spawn(engine.sync_engine.pool.connect)
        except refused:
            if loop.time() + pause > deadline:
                raise
        else:
            try:
                await _ping(pooled)
                return pooled
            except BaseException as failure:  # cancelled too: the connection is not kept
                await greenlet_spawn(pooled.invalidate)
                await greenlet_spawn(pooled.close)
                # Whatever the ping met (a socket reset or closed, the server's "terminating
                # connection", asyncpg's state left by an operation cut short), this
                # connection is done with; another is tried.
                if not isinstance(failure, Exception):
                    raise
                discarded += 1
                if discarded <= DISCARDS:
                    continue  # at once: the next pooled one, or a new one, may answer
                if loop.time() + pause > deadline:
                    raise
        await asyncio.sleep(pause)
        pause = min(longest, pause * 2)


async def _ping(pooled: PoolProxiedConnection) -> None:
    """One round trip, a statement outside any transaction (simple protocol, nothing
    prepared: any pooler takes it), where the pool's pre-ping, on asyncpg, takes three
    (BEGIN, an empty statement, ROLLBACK)."""
    driver = pooled.driver_connection
    if driver is None or driver.is_closed():
        raise asyncpg.InterfaceError("the pooled connection is closed")
    await driver.execute("SELECT 1")
