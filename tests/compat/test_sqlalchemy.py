"""What storyline.compat.sqlalchemy relies on in SQLAlchemy, pinned against a real database.

If an upgrade changes any of this, the test fails here rather than in generateStory.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storyline.compat.sqlalchemy import compile_positional, pooled_driver_connection
from storyline.persistence.engine import sqlalchemy_url
from storyline.persistence.tables import projects


def test_a_named_parameter_used_twice_is_one_positional_parameter() -> None:
    sql, names, constants = compile_positional(text("SELECT :a, :b, :a"))
    assert sql == "SELECT $1, $2, $1"
    assert names == ("a", "b")
    assert constants == {}


def test_literals_become_parameters_whose_values_the_statement_carries() -> None:
    statement = select(projects.c.id).where(
        projects.c.status == "PENDING", projects.c.id == bindparam("project_id")
    )
    sql, names, constants = compile_positional(statement)
    assert sorted(names) == sorted(["project_id", *constants])
    assert list(constants.values()) == ["PENDING"]
    assert sql.count("$") == 2


async def test_statements_compiled_once_run_on_the_pooled_driver_connection(
    engine: AsyncEngine,
) -> None:
    sql, names, constants = compile_positional(
        select(bindparam("word", type_=projects.c.prompt.type)).where(
            bindparam("n", type_=projects.c.credits_used.type) > 1
        )
    )
    values = {"word": "hello", "n": 2, **constants}
    async with pooled_driver_connection(engine) as driver:
        assert isinstance(driver, asyncpg.Connection)
        assert await driver.fetchval(sql, *(values[name] for name in names)) == "hello"


async def test_the_connection_goes_back_to_the_pool_and_is_reused(database_url: str) -> None:
    engine = create_async_engine(sqlalchemy_url(database_url), pool_size=1, max_overflow=0)
    try:
        async with pooled_driver_connection(engine) as driver:
            first = await driver.fetchval("SELECT pg_backend_pid()")
            assert engine.sync_engine.pool.checkedout() == 1  # type: ignore[attr-defined]
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        async with pooled_driver_connection(engine) as driver:
            assert await driver.fetchval("SELECT pg_backend_pid()") == first
    finally:
        await engine.dispose()


async def test_a_connection_left_in_a_transaction_is_not_handed_out_again(
    database_url: str,
) -> None:
    engine = create_async_engine(sqlalchemy_url(database_url), pool_size=1, max_overflow=0)
    try:
        async with pooled_driver_connection(engine) as driver:
            first = await driver.fetchval("SELECT pg_backend_pid()")
            await driver.execute("BEGIN")
        async with pooled_driver_connection(engine) as driver:
            assert await driver.fetchval("SELECT pg_backend_pid()") != first
            assert not driver.is_in_transaction()
    finally:
        await engine.dispose()
