"""What the database holds, read straight from its tables: what a test checks behind the API."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storyline.persistence.engine import sqlalchemy_url
from storyline.persistence.invariants import violations


@dataclass(frozen=True)
class Books:
    """One user's money and projects, read straight from the database."""

    balance: int | None
    ledger: list[tuple[str, int, str | None]]  # (kind, amount, project id)
    projects: list[tuple[str, str]]  # (id, status)


async def books(engine: AsyncEngine, user: str) -> Books:
    async with engine.connect() as conn:
        balance = await conn.scalar(
            text("SELECT balance FROM accounts WHERE user_id = :u"), {"u": user}
        )
        ledger = await conn.execute(
            text(
                "SELECT kind, amount, project_id::text FROM ledger WHERE user_id = :u ORDER BY id"
            ),
            {"u": user},
        )
        projects = await conn.execute(
            text("SELECT id::text, status FROM projects WHERE user_id = :u ORDER BY created_at"),
            {"u": user},
        )
        return Books(
            balance,
            [(row[0], row[1], row[2]) for row in ledger],
            [(row[0], row[1]) for row in projects],
        )


async def row_counts(engine: AsyncEngine) -> dict[str, int]:
    """How many accounts, projects and ledger rows exist: a refused request adds none."""
    async with engine.connect() as conn:
        return {
            table: int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)  # noqa: S608
            for table in ("accounts", "projects", "ledger")
        }


async def money_violations(database_url: str) -> dict[str, object]:
    """The money invariants broken in a database of a test's own (the autouse check covers
    only the suite's main database); empty when all hold."""
    engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        async with engine.connect() as conn:
            return dict(await violations(conn))
    finally:
        await engine.dispose()
