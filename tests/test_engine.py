"""The engine against a URL with an application_name, and its pool against connections
PostgreSQL has ended (every backend of the API, killed with pg_terminate_backend)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fakes import FakeVideoService
from tests.support import Api, books, new_user, storyline


@pytest.fixture
async def named(
    database_url: str, fake_upstream: tuple[FakeVideoService, str]
) -> AsyncIterator[tuple[Api, str]]:
    """An instance whose connections carry an application_name of their own."""
    name = f"storyline-engine-{uuid.uuid4().hex[:12]}"
    url = f"{database_url}{'&' if '?' in database_url else '?'}application_name={name}"
    async with storyline(
        url, upstream_url=fake_upstream[1], upstream_token="upstream-secret-token"
    ) as api:
        yield api, name


async def kill_backends(database_url: str, application_name: str) -> int:
    control = await asyncpg.connect(database_url)
    try:
        killed: int = await control.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
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
