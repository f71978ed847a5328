"""What generateStory's database work costs the API process, by way of running it.

Runs Tx1 (the one-statement reservation) then the confirming UPDATE, one call after the
other, against the bench's own PostgreSQL, three ways, and prints the process CPU and the
wall time per call:

- ``sqlalchemy``: the same statements through SQLAlchemy's execution layer;
- ``driver``: Storyline's path, asyncpg's connection from SQLAlchemy's pool
  (persistence.database.Database, statements compiled once);
- ``asyncpg``: asyncpg's own pool, as the floor endpoint does.

The first two run with SQLAlchemy's per-checkout pre-ping (Storyline's setting) and without.
Run: ``python -m bench.statements [--calls N] [--rounds R]``. One process and no load: the
numbers compare the ways with each other, not with the scenarios.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.harness import on_scratch_database
from storyline.persistence import projects, reservations
from storyline.persistence.database import Database, DriverStatement, Transaction
from storyline.persistence.engine import sqlalchemy_url
from storyline.persistence.projects import NewProject

USER = "bench-statements"
CONFIRM = text(
    "UPDATE projects SET external_id = :external_id, status = CASE WHEN status = 'PENDING' "
    "THEN 'PROCESSING' ELSE status END WHERE id = :id RETURNING *"
)
TX1 = DriverStatement.of(reservations.RESERVE)
CONFIRM_SQL = DriverStatement.of(CONFIRM)

Call = Callable[[], Awaitable[uuid.UUID]]
Confirm = Callable[[uuid.UUID], Awaitable[None]]


def new_project() -> NewProject:
    return NewProject(
        id=uuid.uuid4(),
        user_id=USER,
        credits_used=60,
        prompt="A lighthouse keeper adopts a seal",
        quality="HD",
        aspect_ratio="LANDSCAPE_16_9",
        image_model="comfyui/flux",
        seed=None,
        idempotency_key=None,
        request_fingerprint="f" * 64,
    )


def sqlalchemy_way(engine: AsyncEngine) -> tuple[Call, Confirm]:
    async def tx1() -> uuid.UUID:
        project = new_project()
        async with engine.begin() as conn:
            (await conn.execute(reservations.RESERVE, reservations.parameters(project))).one()
        return project.id

    async def confirm(project_id: uuid.UUID) -> None:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            (await conn.execute(CONFIRM, {"id": project_id, "external_id": str(project_id)})).one()

    return tx1, confirm


def driver_way(engine: AsyncEngine) -> tuple[Call, Confirm]:
    database = Database(engine)

    async def tx1() -> uuid.UUID:
        project = new_project()
        async with database.transaction() as tx:
            await reservations.reserve(tx, project=project)
        return project.id

    async def confirm(project_id: uuid.UUID) -> None:
        async with database.autocommit() as tx:
            await projects.confirm_created(tx, project_id=project_id, external_id=str(project_id))

    return tx1, confirm


def asyncpg_way(pool: asyncpg.Pool) -> tuple[Call, Confirm]:
    async def tx1() -> uuid.UUID:
        project = new_project()
        async with pool.acquire() as conn, conn.transaction():
            await Transaction(conn).fetchrow(TX1, reservations.parameters(project))
        return project.id

    async def confirm(project_id: uuid.UUID) -> None:
        async with pool.acquire() as conn:
            values = {"id": project_id, "external_id": str(project_id)}
            await Transaction(conn).fetchrow(CONFIRM_SQL, values)

    return tx1, confirm


async def measure(name: str, way: tuple[Call, Confirm], calls: int) -> None:
    tx1, confirm = way
    await confirm(await tx1())  # warm: connections, prepared statements
    cpu, wall = time.process_time(), time.perf_counter()
    made = [await tx1() for _ in range(calls)]
    tx1_cpu, tx1_wall = time.process_time() - cpu, time.perf_counter() - wall
    cpu, wall = time.process_time(), time.perf_counter()
    for project_id in made:
        await confirm(project_id)
    confirm_cpu, confirm_wall = time.process_time() - cpu, time.perf_counter() - wall
    per = 1e6 / calls
    print(
        f"{name:28} Tx1 {tx1_cpu * per:6.0f} µs CPU {tx1_wall * per:6.0f} µs wall | "
        f"confirm {confirm_cpu * per:6.0f} µs CPU {confirm_wall * per:6.0f} µs wall",
        flush=True,
    )


async def run(url: str, calls: int, rounds: int) -> None:
    seed = await asyncpg.connect(url)
    await seed.execute("INSERT INTO accounts (user_id, balance) VALUES ($1, 2000000000)", USER)
    await seed.close()
    for round_ in range(rounds):
        print(f"round {round_ + 1}/{rounds}, {calls} calls each", flush=True)
        for pre_ping in (True, False):
            engine = create_async_engine(sqlalchemy_url(url), pool_size=10, pool_pre_ping=pre_ping)
            try:
                await measure(f"sqlalchemy (pre-ping {pre_ping})", sqlalchemy_way(engine), calls)
                await measure(f"driver (pre-ping {pre_ping})", driver_way(engine), calls)
            finally:
                await engine.dispose()
        pool = await asyncpg.create_pool(url, min_size=2, max_size=10)
        try:
            await measure("asyncpg pool", asyncpg_way(pool), calls)
        finally:
            await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.statements")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    on_scratch_database("statements", lambda url, work: run(url, args.calls, args.rounds))


if __name__ == "__main__":
    main()
