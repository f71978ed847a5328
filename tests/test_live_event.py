"""The live event's one declaration (storyline.live.events.FIELDS) against everything that
writes or reads its wire shape: the trigger's payload (SQL in the migrations, checked on a
real database), the parser, and the GraphQL type clients receive."""

from __future__ import annotations

import asyncio
import json
import types
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from graphql import GraphQLNonNull, GraphQLObjectType
from graphql import build_schema as parse_schema

from storyline.live.events import FIELDS, LEDGER_KEYS, BalanceEvent, ProjectEvent
from storyline.persistence import accounts, projects
from storyline.persistence.listener import CHANNEL, LEDGER_CHANNEL
from storyline.schema.roots import build_schema
from tests.support import Api, new_user

DECLARED_KEYS = {wired.key for wired in FIELDS}
LIMIT = 8000  # PostgreSQL refuses a NOTIFY payload of this many bytes or more


@asynccontextmanager
async def notifications(
    database_url: str, channel: str = CHANNEL
) -> AsyncIterator[asyncio.Queue[str]]:
    """The payloads of a trigger's channel, heard on a connection of the test's own."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    connection = await asyncpg.connect(database_url)
    try:
        await connection.add_listener(channel, lambda *args: heard.put_nowait(args[-1]))
        yield heard
    finally:
        await connection.close()


async def update_and_hear(
    database_url: str, project_id: str, *, stage: str, error_message: str | None
) -> tuple[dict[str, Any], str]:
    """Run a real UPDATE of the project row; the trigger's payload for it, parsed and raw."""
    async with notifications(database_url) as heard:
        writer = await asyncpg.connect(database_url)
        try:
            await writer.execute(
                "UPDATE projects SET stage = $2, error_message = $3 WHERE id = $1",
                uuid.UUID(project_id),
                stage,
                error_message,
            )
        finally:
            await writer.close()
        while True:
            raw = await asyncio.wait_for(heard.get(), 5)
            sent: dict[str, Any] = json.loads(raw)
            if sent["id"] == project_id:
                return sent, raw


async def test_the_trigger_sends_the_declared_fields_and_they_parse_to_the_row(
    api: Api, database_url: str
) -> None:
    project = (await api.generate(new_user()))["data"]["generateStory"]
    sent, raw = await update_and_hear(
        database_url, project["id"], stage="render", error_message=None
    )

    assert set(sent) == DECLARED_KEYS
    async with api.services.database.autocommit() as tx:
        row = await projects.get(tx, project_id=uuid.UUID(project["id"]))
    assert row is not None
    assert ProjectEvent.parse(raw) == ProjectEvent.of(row)


async def test_a_cut_payload_keeps_the_declared_fields_under_the_limit(
    api: Api, database_url: str
) -> None:
    project = (await api.generate(new_user()))["data"]["generateStory"]
    sent, raw = await update_and_hear(
        database_url, project["id"], stage="\x02" * 500, error_message="\x01" * 20_000
    )

    assert set(sent) == DECLARED_KEYS
    assert len(raw.encode()) < LIMIT
    event = ProjectEvent.parse(raw)
    assert event.truncated
    assert event.error_message is not None
    assert 0 < len(event.error_message) < 20_000
    assert event.stage is not None
    assert 0 < len(event.stage) < 500


@pytest.mark.parametrize("missing", sorted(DECLARED_KEYS))
def test_a_payload_without_a_declared_key_is_not_an_event(missing: str) -> None:
    complete = {
        "id": str(uuid.uuid4()),
        "user_id": "someone",
        "xid": 1234,
        "status": "PROCESSING",
        "version": 2,
        "progress": None,
        "stage": None,
        "error_message": None,
        "result_url": None,
        "truncated": False,
        "updated_at": "2026-12-01T10:00:00+00:00",
    }
    assert set(complete) == DECLARED_KEYS
    ProjectEvent.parse(json.dumps(complete))
    del complete[missing]
    with pytest.raises(ValueError, match="not a project notification"):
        ProjectEvent.parse(json.dumps(complete))


def test_clients_see_the_declared_graphql_fields_with_the_declared_nullability() -> None:
    served = parse_schema(build_schema().as_str()).get_type("ProjectStatusEvent")
    assert isinstance(served, GraphQLObjectType)
    shown = {wired.graphql: wired for wired in FIELDS if wired.graphql is not None}
    assert set(served.fields) == set(shown)
    for name, wired in shown.items():
        nullable = isinstance(wired.type, types.UnionType) and type(None) in wired.type.__args__
        assert isinstance(served.fields[name].type, GraphQLNonNull) != nullable, name


async def test_every_ledger_entry_is_announced_as_its_row(api: Api, database_url: str) -> None:
    user = new_user()
    async with notifications(database_url, LEDGER_CHANNEL) as heard:
        await api.grant(user, 7)  # the account's sign-up grant, then this one
        raws = [await asyncio.wait_for(heard.get(), 5) for _ in range(2)]
    async with api.services.database.autocommit() as tx:
        rows = await accounts.ledger_page(tx, user_id=user, first=2, before_id=None)
    for raw in raws:
        assert set(json.loads(raw)) == set(LEDGER_KEYS)
    assert [BalanceEvent.parse(raw).entry for raw in raws] == rows[::-1]
    assert [entry.kind for entry in rows[::-1]] == ["GRANT", "GRANT"]


def test_a_ledger_payload_without_a_column_is_not_an_event() -> None:
    with pytest.raises(ValueError, match="not a ledger notification"):
        BalanceEvent.parse(json.dumps({"id": 1, "user_id": "someone"}))
