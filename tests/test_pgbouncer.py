"""Storyline behind PgBouncer in transaction mode, as managed PostgreSQL is usually reached.

The pool goes through a real PgBouncer (Debian's, 1.18: no prepared-statement support) that
gives every transaction whichever of its two server connections is free
(``STORYLINE_DATABASE_POOLER=transaction``); the LISTEN connection goes direct
(``STORYLINE_LISTEN_DATABASE_URL``, which the migrations use too: see test_cli.py).
Skipped where pgbouncer is not installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from websockets.asyncio.client import ClientConnection

from storyline.config import Settings
from storyline.persistence.engine import driver_url, sqlalchemy_url
from storyline.persistence.invariants import violations
from tests.support import Api, books, new_user, storyline, token
from tests.support.databases import backends, migrated_database
from tests.support.fakes import FakeVideoService
from tests.support.pgbouncer import PGBOUNCER, WHY_ABSENT, Bouncer, pgbouncer
from tests.support.watch import connected, next_event, next_message, start

needs_pgbouncer = pytest.mark.skipif(PGBOUNCER is None, reason=WHY_ABSENT)

SERVER_CONNECTIONS = 2  # PgBouncer's pool for the database: far fewer than Storyline's
# application_name of the LISTEN connection and of the pool's connections (which PgBouncer
# passes on to the server connection serving them), to tell them apart in pg_stat_activity
LISTENER = "storyline-listener"
POOL = "storyline-pool"
NOWHERE = "postgresql://postgres@/nowhere?host=/nonexistent-storyline-dir"


def named(url: str, application_name: str) -> str:
    return (
        make_url(url)
        .update_query_dict({"application_name": application_name})
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="module")
async def bouncer(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Bouncer]:
    directory = tmp_path_factory.mktemp("pgbouncer")
    async with pgbouncer(server_url, directory, pool_size=SERVER_CONNECTIONS) as running:
        yield running


@pytest.fixture(scope="module")
async def direct(server_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a database of this module's own (migrated), not through PgBouncer."""
    engine = create_async_engine(sqlalchemy_url(await migrated_database(server_url)))
    yield engine
    await engine.dispose()


def url_of(engine: AsyncEngine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture(scope="module")
async def pooled(
    bouncer: Bouncer, direct: AsyncEngine, fake_upstream: tuple[FakeVideoService, str]
) -> AsyncIterator[Api]:
    """Storyline with its pool through PgBouncer and its listener direct."""
    async with storyline(
        named(bouncer.url(url_of(direct)), POOL),
        database_pooler="transaction",
        listen_database_url=named(url_of(direct), LISTENER),
        upstream_url=fake_upstream[1],
        upstream_timeout=10,  # many requests at once on two cores may keep the fake waiting
    ) as api:
        yield api


async def assert_money_invariants(engine: AsyncEngine) -> None:
    """The autouse check covers the suite's database; this module's is checked here."""
    async with engine.connect() as conn:
        broken = await violations(conn)
    assert not broken, f"money invariants broken: {broken}"


async def reported(api: Api, ws: ClientConnection, **fields: Any) -> dict[str, Any]:
    """Report ``fields`` (updateStatus) and return the event the watcher then gets (each of
    its subscriptions has its project's id for operation id)."""
    answer = await api.report(**fields)
    assert "errors" not in answer, answer
    return await next_event(ws, fields["projectId"], within=10)


@needs_pgbouncer
async def test_generate_report_and_watch_live_through_pgbouncer(
    pooled: Api, direct: AsyncEngine
) -> None:
    ready = await pooled.http.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"database": "ok", "listener": "connected"})
    user = new_user()
    done = (await pooled.generate(user, quality="SD"))["data"]["generateStory"]["id"]
    failed = (await pooled.generate(user, quality="SD"))["data"]["generateStory"]["id"]

    async with connected(pooled.url, token(user)) as ws:
        await start(ws, done, op=done)
        await start(ws, failed, op=failed)
        firsts = [await next_message(ws, 10) for _ in range(2)]
        current = {first["id"]: first["payload"]["data"]["projectStatus"] for first in firsts}
        # Each project's current state first.
        assert {op: event["status"] for op, event in current.items()} == {
            done: "PROCESSING",
            failed: "PROCESSING",
        }

        for progress, stage in ((20, "script"), (70, "render")):
            event = await reported(
                pooled, ws, projectId=done, status="PROCESSING", progress=progress, stage=stage
            )
            assert (event["status"], event["progress"], event["stage"]) == (
                "PROCESSING",
                progress,
                stage,
            )
        video = "https://cdn.example/v.mp4"
        event = await reported(pooled, ws, projectId=done, status="COMPLETED", resultUrl=video)
        assert (event["status"], event["resultUrl"]) == ("COMPLETED", video)
        assert await next_message(ws, 10) == {"id": done, "type": "complete"}

        crash = "renderer crashed"
        event = await reported(pooled, ws, projectId=failed, status="FAILED", errorMessage=crash)
        assert (event["status"], event["errorMessage"]) == ("FAILED", crash)
        assert await next_message(ws, 10) == {"id": failed, "type": "complete"}

    state = await books(direct, user)
    assert state.balance == 100 - 40  # the failed project's 40 credits came back
    assert [(kind, amount) for kind, amount, _ in state.ledger] == [
        ("GRANT", 100),
        ("CHARGE", -40),
        ("CHARGE", -40),
        ("REFUND", 40),
    ]
    await assert_money_invariants(direct)


@needs_pgbouncer
async def test_many_requests_at_once_share_two_server_connections(
    pooled: Api, direct: AsyncEngine, server_url: str
) -> None:
    """Statements of many pooled connections run on the same two server connections, each
    transaction on whichever is free: none may rely on a statement prepared in an earlier
    one."""
    users = [new_user() for _ in range(10)]
    bodies = await asyncio.gather(
        *(
            pooled.generate(user, quality="SD", prompt=f"Story {n}")
            for user in users
            for n in (0, 1)
        )
    )
    assert all("errors" not in body for body in bodies), bodies
    projects = [body["data"]["generateStory"] for body in bodies]
    # Each user's first project completes and the second fails, all reported at once.
    answers = await asyncio.gather(
        *(
            pooled.report(projectId=project["id"], status="COMPLETED")
            if n % 2 == 0
            else pooled.report(projectId=project["id"], status="FAILED", errorMessage="crash")
            for n, project in enumerate(projects)
        )
    )
    assert all("errors" not in answer for answer in answers), answers

    for user in users:
        state = await books(direct, user)
        assert state.balance == 60
        assert sorted(status for _, status in state.projects) == ["COMPLETED", "FAILED"]
    await assert_money_invariants(direct)
    database = direct.url.database
    control = await asyncpg.connect(driver_url(server_url))
    try:
        serving_the_pool = await backends(control, database=database, application_name=POOL)
        listening = await backends(control, database=database, application_name=LISTENER)
    finally:
        await control.close()
    assert 1 <= len(serving_the_pool) <= SERVER_CONNECTIONS
    assert len(listening) == 1


def test_a_transaction_pooler_without_a_session_url_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings.model_validate({"database_url": NOWHERE, "database_pooler": "transaction"})
    assert "STORYLINE_LISTEN_DATABASE_URL" in str(refused.value)
