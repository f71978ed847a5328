"""The engine against a URL with an application_name, its pool against connections
PostgreSQL has ended (every backend of the API, killed with pg_terminate_backend) or will
not accept for a while, the bound on the connections an instance holds, and the ping that
says whether the database answers (/readyz, and the wait for the database at start-up)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from storyline.persistence.database import Database, Unreachable
from tests.support import Api, books, free_port, new_user, storyline, token
from tests.support.databases import backends, create_database, database_name, migrated_database
from tests.support.fakes import FakeVideoService

ME = "{ me { balance } }"


def named_url(database_url: str) -> tuple[str, str]:
    """A URL whose connections carry an application_name of their own, and the name."""
    name = f"storyline-engine-{uuid.uuid4().hex[:12]}"
    return f"{database_url}{'&' if '?' in database_url else '?'}application_name={name}", name


@pytest.fixture
async def named(
    database_url: str, fake_upstream: tuple[FakeVideoService, str]
) -> AsyncIterator[tuple[Api, str]]:
    """An instance whose connections carry an application_name of their own."""
    url, name = named_url(database_url)
    async with storyline(
        url, upstream_url=fake_upstream[1], upstream_token="upstream-secret-token"
    ) as api:
        yield api, name


async def kill_backends(database_url: str, application_name: str) -> int:
    control = await asyncpg.connect(database_url)
    try:
        # Each backend ended before this returns (the timeout waits for it): a request cut
        # mid-statement by a backend ending under it is another case than this one's.
        killed: int = await control.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) "
            "FROM pg_stat_activity "
            "WHERE application_name = $1",
            application_name,
        )
    finally:
        await control.close()
    return killed


async def test_pooled_connections_killed_by_the_server_are_replaced_unseen(
    named: tuple[Api, str], database_url: str, engine: AsyncEngine
) -> None:
    api, name = named
    user = new_user()
    first = (await api.generate(user, quality="SD"))["data"]["generateStory"]
    assert await kill_backends(database_url, name) >= 2  # the pool's, and the listener's

    body = await api.generate(user, quality="SD")
    assert "errors" not in body, body
    second = body["data"]["generateStory"]
    assert second["status"] == "PROCESSING"
    state = await books(engine, user)
    assert state.balance == 100 - 40 - 40
    assert sorted(state.projects) == sorted(
        [(first["id"], "PROCESSING"), (second["id"], "PROCESSING")]
    )


async def test_an_instance_holds_at_most_its_pool_size_of_connections_and_keeps_them(
    database_url: str, fake_upstream: tuple[FakeVideoService, str]
) -> None:
    url, name = named_url(database_url)
    control = await asyncpg.connect(database_url)
    count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
    async with storyline(url, upstream_url=fake_upstream[1], db_pool_size=3) as api:
        project = (await api.generate(new_user(), quality="SD"))["data"]["generateStory"]
        most = 0
        burst_over = asyncio.Event()

        async def sample() -> None:
            nonlocal most
            while not burst_over.is_set():
                most = max(most, await control.fetchval(count, name))

        sampler = asyncio.create_task(sample())
        # Reports on one project queue on its row lock, each holding a connection meanwhile:
        # far more want one than the pool has.
        bodies = await asyncio.gather(
            *(
                api.report(projectId=project["id"], status="PROCESSING", progress=n)
                for n in range(24)
            )
        )
        burst_over.set()
        await sampler
        after = await control.fetchval(count, name)
    await control.close()
    assert all("errors" not in body for body in bodies), bodies
    assert most == 3 + 1, most  # the pool, and the listener's connection
    assert after == 3 + 1, after  # the burst's connections stay open for the next one


async def test_a_request_made_while_postgres_refuses_connections_waits_for_it(
    server_url: str, fake_upstream: tuple[FakeVideoService, str]
) -> None:
    """What a PostgreSQL restart looks like to an instance: every pooled connection dead,
    and new ones refused for a moment. The request waits (its checkout has sent nothing,
    so trying again is safe) and is served once connections are accepted again, where it
    used to be answered INTERNAL_SERVER_ERROR (the chaos harness's postgres-restart)."""
    database = await migrated_database(server_url)
    control = await asyncpg.connect(server_url)
    user = new_user()
    try:
        async with storyline(database, upstream_url=fake_upstream[1]) as api:
            assert "errors" not in await api.post(ME, auth=token(user))
            name = database_name(database)
            await control.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            try:
                for pid in await backends(control, database=name):
                    await control.execute("SELECT pg_terminate_backend($1)", pid)
                asked = asyncio.create_task(api.post(ME, auth=token(user)))
                await asyncio.sleep(1.0)
                assert not asked.done()  # waiting, not failed
            finally:
                await control.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            body = await asyncio.wait_for(asked, 10)
    finally:
        await control.close()
    assert body == {"data": {"me": {"balance": 100}}}


async def test_the_ping_says_unreachable_while_the_database_admits_no_one_then_answers(
    server_url: str,
) -> None:
    url = await create_database(server_url)
    name = database_name(url)
    database = Database.open(url, pool_size=1)
    control = await asyncpg.connect(server_url)
    try:
        await database.ping()
        # The pooled connection ended, and no new one admitted: the checkout's ping fails,
        # then its reconnect.
        await control.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            ended = await control.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1",
                name,
            )
            assert ended == 1
            with pytest.raises(Unreachable):
                await database.ping()
        finally:
            await control.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await database.ping()
    finally:
        await control.close()
        await database.dispose()


async def test_the_ping_says_unreachable_where_no_server_listens() -> None:
    database = Database.open(f"postgresql://storyline@127.0.0.1:{free_port()}/none", pool_size=1)
    try:
        with pytest.raises(Unreachable):
            await database.ping()
    finally:
        await database.dispose()


async def test_a_connection_lost_as_the_pool_first_connects_is_unreachable_not_a_crash(
    database_url: str,
) -> None:
    """The pool's first connection runs SQLAlchemy's dialect set-up (a query). A backend
    ended under it (a restart, a proxy cut) failed start-up with SQLAlchemy's DBAPIError,
    which the ping did not take for the database not answering. It is that, and the next
    ping connects."""
    database = Database.open(database_url, pool_size=1)
    ended: list[int] = []

    def end_backend(dbapi_connection: Any, _record: object) -> None:
        # A listener is synchronous: the backend is ended from a thread, and waited for.
        if not ended:
            ended.append(dbapi_connection.driver_connection.get_server_pid())
            worker = threading.Thread(
                target=asyncio.run, args=(terminate_backend(database_url, ended[0]),)
            )
            worker.start()
            worker.join()

    event.listen(database.engine.sync_engine.pool, "first_connect", end_backend, insert=True)
    try:
        with pytest.raises(Unreachable):
            await database.ping()
        assert ended
        await database.ping()
    finally:
        await database.dispose()


async def terminate_backend(database_url: str, pid: int) -> None:
    control = await asyncpg.connect(database_url)
    try:
        await control.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    finally:
        await control.close()
