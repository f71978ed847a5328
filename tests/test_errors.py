"""Bad input is refused with its field and changes nothing; the unexpected is masked."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storyline.auth import Role
from storyline.persistence.engine import sqlalchemy_url
from tests.support import Api, books, new_user, storyline, token
from tests.support.databases import migrated_database


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 100_000}, "prompt"),
        ({"idempotencyKey": "k" * 256}, "idempotencyKey"),
        ({"imageModel": ""}, "imageModel"),
        ({"seed": -3}, "seed"),
    ],
)
async def test_bad_story_input_is_refused_before_anything_is_charged(
    api: Api, engine: AsyncEngine, fields: dict[str, Any], field: str
) -> None:
    user = new_user()
    await api.data("{ me { balance } }", auth=token(user))
    before = await books(engine, user)
    body = await api.generate(user, **fields)
    assert body["data"] is None
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": field}
    assert await books(engine, user) == before


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "projectId"),
        ({"externalId": "e"}, "projectId"),
        ({"progress": 101}, "progress"),
        ({"resultUrl": "file:///etc/passwd"}, "resultUrl"),
        ({"stage": "s" * 500}, "stage"),
    ],
)
async def test_bad_reports_are_refused_and_change_nothing(
    api: Api, engine: AsyncEngine, fields: dict[str, Any], field: str
) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    before = await books(engine, user)
    naming = {"projectId": project["id"]} if fields else {}
    body = await api.report(status="PROCESSING", **naming, **fields)
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": field}
    assert await books(engine, user) == before
    again = await api.data(
        "query($id: ID!) { project(id: $id) { version } }", {"id": project["id"]}, auth=token(user)
    )
    assert again["project"]["version"] == project["version"]


async def test_graphql_validation_errors_stay_readable(api: Api) -> None:
    body = await api.post("{ me { nope } }", auth=token(new_user()))
    assert "nope" in body["errors"][0]["message"]
    assert body.get("data") is None


async def test_an_unexpected_failure_is_masked_and_logged(
    server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    database_url = await migrated_database(server_url)
    broken = create_async_engine(sqlalchemy_url(database_url))
    async with broken.begin() as conn:
        await conn.execute(text("ALTER TABLE ledger RENAME TO ledger_elsewhere"))

    async with storyline(database_url) as api:
        with caplog.at_level(logging.ERROR, logger="storyline"):
            body = await api.post("{ me { balance } }", auth=token(new_user()))
        async with broken.connect() as conn:  # the half-made account was rolled back
            assert await conn.scalar(text("SELECT count(*) FROM accounts")) == 0
        [error] = body["errors"]
        assert error == {
            "message": "Internal server error.",
            "locations": [{"line": 1, "column": 3}],
            "path": ["me"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }
        assert any("ledger" in str(record.exc_info) for record in caplog.records)
        # The instance still serves what does not need the broken table.
        assert (await api.data("{ price }", auth=token("x", Role.ADMIN))) == {"price": 60}
    await broken.dispose()


@pytest.mark.parametrize(
    "query",
    [
        "{ me { nope } }",
        "{ price(quality: ULTRA) }",
        "{ projects(first: 99999999999) { edges { cursor } } }",
        "{ price ",
    ],
    ids=["unknown field", "bad enum", "int overflow", "syntax"],
)
async def test_every_refused_document_carries_a_contract_code(api: Api, query: str) -> None:
    body = await api.post(query, auth=token(new_user()))
    assert body.get("data") is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
