"""generateStory when the video service refuses, breaks or stalls, and when credits run out."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Api, books, free_port, new_user, storyline, token
from tests.support.databases import migrated_database
from tests.support.fakes import FakeVideoService
from tests.support.watch import connected


@pytest.mark.parametrize("tag", ["[422]", "[500]", "[malformed]", "[no-id]"])
async def test_a_refusal_fails_refunds_and_answers_upstream_failed(
    api: Api, engine: AsyncEngine, fake: FakeVideoService, tag: str
) -> None:
    user = new_user()
    error = await api.error(
        "mutation($p: String!) { generateStory(input: {prompt: $p}) { id } }",
        {"p": f"A cat {tag}"},
        auth=token(user),
    )
    assert error["extensions"]["code"] == "UPSTREAM_FAILED"
    project_id = error["extensions"]["projectId"]
    assert len(fake.calls_for(project_id)) == 1

    state = await books(engine, user)
    assert state.balance == 100
    assert state.projects == [(project_id, "FAILED")]
    assert state.ledger == [
        ("GRANT", 100, None),
        ("CHARGE", -60, project_id),
        ("REFUND", 60, project_id),
    ]
    project = (
        await api.data(
            "query($id: ID!) { project(id: $id) { status errorMessage version } }",
            {"id": project_id},
            auth=token(user),
        )
    )["project"]
    assert project["status"] == "FAILED"
    assert "video service" in project["errorMessage"]


async def test_a_job_id_the_service_gave_another_project_fails_and_refunds(
    api: Api, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    user = new_user()
    job = f"job-{uuid.uuid4()}"
    first = await api.generate(user, quality="SD", prompt=f"A cat [id:{job}]")
    assert first["data"]["generateStory"]["externalId"] == job
    with caplog.at_level(logging.INFO):
        second = await api.generate(user, quality="SD", prompt=f"A dog [id:{job}]")
    [error] = second["errors"]
    assert error["extensions"]["code"] == "UPSTREAM_FAILED"
    project_id = error["extensions"]["projectId"]
    assert "job id" in error["message"]

    state = await books(engine, user)
    assert state.balance == 100 - 40  # the first project's charge only
    assert state.projects == [
        (first["data"]["generateStory"]["id"], "PROCESSING"),
        (project_id, "FAILED"),
    ]
    assert state.ledger[-2:] == [("CHARGE", -40, project_id), ("REFUND", 40, project_id)]
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert (warning.levelno, warning.exc_info) == (logging.WARNING, None)
    assert project_id in warning.getMessage()
    assert "job id" in warning.getMessage()
    assert "upstream-secret-token" not in caplog.text


async def test_a_refused_connection_fails_and_refunds(server_url: str) -> None:
    database_url = await migrated_database(server_url)
    closed = f"http://127.0.0.1:{free_port()}"
    async with storyline(database_url, upstream_url=closed) as api:
        user = new_user()
        error = await api.error(
            'mutation { generateStory(input: {prompt: "A cat"}) { id } }', auth=token(user)
        )
        assert error["extensions"]["code"] == "UPSTREAM_FAILED"
        me = await api.data("{ me { balance } }", auth=token(user))
        assert me["me"]["balance"] == 100


async def test_a_timeout_leaves_the_project_pending_with_credits_held(
    api: Api, engine: AsyncEngine
) -> None:
    user = new_user()
    body = await api.generate(user, prompt="A slow cat [hang]")
    assert "errors" not in body, body
    project = body["data"]["generateStory"]
    assert (project["status"], project["externalId"]) == ("PENDING", None)
    state = await books(engine, user)
    assert state.balance == 40
    assert state.ledger[-1] == ("CHARGE", -60, project["id"])


async def test_insufficient_credits_saves_and_charges_nothing(
    api: Api, engine: AsyncEngine, fake: FakeVideoService
) -> None:
    user = new_user()
    assert "errors" not in await api.generate(user, quality="FULL_HD")
    calls = len(fake.calls)
    before = await books(engine, user)

    error = await api.error(
        'mutation { generateStory(input: {prompt: "Again", quality: FULL_HD}) { id } }',
        auth=token(user),
    )
    assert error["extensions"] == {"code": "INSUFFICIENT_CREDITS", "required": 80, "balance": 20}
    assert await books(engine, user) == before
    assert len(fake.calls) == calls


async def test_a_pipeline_report_before_the_answer_is_not_overwritten(
    api: Api, engine: AsyncEngine
) -> None:
    user = new_user()
    project = (await api.generate(user, prompt="Quick [complete-first]"))["data"]["generateStory"]
    assert project["status"] == "COMPLETED"
    assert project["externalId"] is not None
    assert project["resultUrl"] == "https://cdn.example/v.mp4"
    assert (await books(engine, user)).balance == 40


async def test_a_failure_reported_before_the_answer_stands_refunded_once(
    api: Api, engine: AsyncEngine
) -> None:
    user = new_user()
    project = (await api.generate(user, prompt="Doomed [fail-first]"))["data"]["generateStory"]
    assert project["status"] == "FAILED"
    state = await books(engine, user)
    assert state.balance == 100
    assert [kind for kind, _, _ in state.ledger] == ["GRANT", "CHARGE", "REFUND"]


async def test_a_client_that_leaves_mid_creation_still_gets_its_job_recorded(
    api: Api, engine: AsyncEngine, fake: FakeVideoService
) -> None:
    """A mutation over a WebSocket, cancelled by the client while the service is answering."""
    user = new_user()
    async with connected(api.url, token(user)) as ws:
        query = 'mutation { generateStory(input: {prompt: "Leaving [slow]"}) { id } }'
        await ws.send(json.dumps({"id": "m", "type": "subscribe", "payload": {"query": query}}))
        await asyncio.sleep(0.2)  # charged, and the video service is working on it
        await ws.send(json.dumps({"id": "m", "type": "complete"}))
    await asyncio.sleep(1.0)
    state = await books(engine, user)
    [(project_id, status)] = state.projects
    assert status == "PROCESSING"  # the upstream id was recorded after all
    assert len(fake.calls_for(project_id)) == 1
    assert state.balance == 40
