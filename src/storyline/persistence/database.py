"""The one way use cases reach the database.

``Database.transaction()`` (BEGIN … COMMIT) and ``Database.autocommit()`` (each statement
commits on its own: reads, or one statement that is atomic by itself) both hand out a
``Transaction``, the only handle use cases pass to persistence functions. Persistence
functions never commit; the use case that opened the transaction decides when it ends.

Underneath, statements are built with SQLAlchemy, compiled once (``DriverStatement``) and
run on asyncpg's own connection, taken from SQLAlchemy's pool: SQLAlchemy's execution
layer (greenlet hand-offs, result processing) costs the API process more CPU than the
statements themselves (``python -m bench.statements`` compares the two), and generateStory
and updateStatus, the mutations clients send at rate, are bound by that CPU. asyncpg keeps
the statements it prepared for each connection; behind a transaction-mode pooler it keeps
none (``transaction_pooler``, see engine.UNPREPARED).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol, TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement

from storyline.compat.sqlalchemy import (
    compile_positional,
    connection_failures,
    pooled_driver_connection,
)
from storyline.persistence.engine import create_engine

_NO_VALUES: Mapping[str, object] = {}
# Seconds a request waits for PostgreSQL to accept connections again (a restart, a
# failover) before it fails: its checkout has sent nothing, so trying again is safe.
CHECKOUT_PATIENCE = 5.0


class Dataclass(Protocol):
    __dataclass_fields__: ClassVar[dict[str, Any]]


RecordT = TypeVar("RecordT", bound=Dataclass)


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
        return cls(*compile_positional(statement))

    def arguments(self, values: Mapping[str, object]) -> list[object]:
        return [
            values[name] if name in values else self.constants[name] for name in self.parameters
        ]


def mapper(record: type[RecordT]) -> Callable[[asyncpg.Record], RecordT]:
    """How rows become ``record``s (a dataclass whose fields are columns): each field
    from the column of its name; a row may carry more columns than the record has."""
    names = tuple(field.name for field in fields(record))

    def of(row: asyncpg.Record) -> RecordT:
        return record(**{name: row[name] for name in names})

    return of


class Transaction:
    """One pooled connection, in a transaction or committing statement by statement (as
    the ``Database`` method that opened it says). Valid only inside that ``async with``."""

    __slots__ = ("_driver",)

    def __init__(self, driver: asyncpg.Connection) -> None:
        self._driver = driver

    async def fetch(
        self, statement: DriverStatement, values: Mapping[str, object] = _NO_VALUES
    ) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._driver.fetch(
            statement.sql, *statement.arguments(values)
        )
        return rows

    async def fetchrow(
        self, statement: DriverStatement, values: Mapping[str, object] = _NO_VALUES
    ) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._driver.fetchrow(
            statement.sql, *statement.arguments(values)
        )
        return row

    async def fetchval(
        self, statement: DriverStatement, values: Mapping[str, object] = _NO_VALUES
    ) -> Any:
        return await self._driver.fetchval(statement.sql, *statement.arguments(values))

    async def execute(
        self, statement: DriverStatement, values: Mapping[str, object] = _NO_VALUES
    ) -> None:
        await self._driver.execute(statement.sql, *statement.arguments(values))


class Unreachable(Exception):
    """The database did not answer."""


class Database:
    """The engine's pool, and the two ways into it."""

    def __init__(self, engine: AsyncEngine, *, patience: float = CHECKOUT_PATIENCE) -> None:
        self.engine = engine
        self.patience = patience

    @classmethod
    def open(cls, url: str, *, pool_size: int, transaction_pooler: bool = False) -> Database:
        return cls(create_engine(url, pool_size=pool_size, transaction_pooler=transaction_pooler))

    @asynccontextmanager
    async def transaction(self, *, snapshot: bool = False) -> AsyncIterator[Transaction]:
        """BEGIN … COMMIT, or ROLLBACK when the block raises. ``snapshot``: read only, and
        every statement sees the one snapshot the first one took (REPEATABLE READ)."""
        isolation = "repeatable_read" if snapshot else None
        async with (
            pooled_driver_connection(self.engine, patience=self.patience) as driver,
            driver.transaction(isolation=isolation, readonly=snapshot),
        ):
            yield Transaction(driver)

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Transaction]:
        """No BEGIN and COMMIT round trips: each statement is its own transaction."""
        async with pooled_driver_connection(self.engine, patience=self.patience) as driver:
            yield Transaction(driver)

    async def ping(self) -> None:
        """``SELECT 1`` on a pooled connection, the way every statement goes; raises
        Unreachable when the database does not answer."""
        try:
            # The checkout's own ping (one SELECT 1) is the probe; unlike a request, a probe
            # does not wait for the database to take connections.
            async with pooled_driver_connection(self.engine):
                pass
        except connection_failures(self.engine) as error:
            raise Unreachable(str(error)) from error

    async def dispose(self) -> None:
        await self.engine.dispose()
