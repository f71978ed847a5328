"""The sweeper resolves stuck projects, once each, even with several instances sweeping."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storyline.domain.lifecycle import Report, Status
from storyline.jobs.sweeper import _settle, _stale, sweep
from storyline.persistence.engine import sqlalchemy_url
from storyline.persistence.invariants import violations
from tests.support import Api, books, new_user, storyline, token
from tests.support.databases import migrated_database
from tests.support.fakes import FakeVideoService

# Wide enough that generateStory (0.2 s of upstream timeout, more on a loaded CI machine)
# ends well inside it, before the test's first sweep.
TIMEOUT = 1.0
QUIET = 3600.0  # no background sweep during a test unless it asks for one
OUTCOME = {"PROCESSING": "processing_timed_out", "PENDING": "pending_to_failed"}


@pytest.fixture
async def own_database(server_url: str) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A database of this test's own: a short-timeout sweeper would touch anyone's projects."""
    url = await migrated_database(server_url)
    engine = create_async_engine(sqlalchemy_url(url))
    yield url, engine
    async with engine.connect() as conn:
        assert await violations(conn) == {}
    await engine.dispose()


def instance(url: str, upstream: str, **overrides: Any) -> Any:
    settings: dict[str, Any] = {
        "upstream_url": upstream,
        "upstream_timeout": 0.2,
        "pending_timeout": TIMEOUT,
        "processing_timeout": TIMEOUT,
        "sweep_interval": QUIET,
        **overrides,
    }
    return storyline(url, **settings)


async def test_pending_without_upstream_id_is_failed_and_refunded(
    own_database: tuple[str, AsyncEngine], fake_upstream: tuple[FakeVideoService, str]
) -> None:
    url, engine = own_database
    async with instance(url, fake_upstream[1]) as api:
        user = new_user()
        project = (await api.generate(user, prompt="Lost [hang]"))["data"]["generateStory"]
        assert project["status"] == "PENDING"
        assert await sweep(api.services) == Counter()  # not old enough yet
        await asyncio.sleep(TIMEOUT + 0.1)
        assert await sweep(api.services) == Counter({"pending_to_failed": 1})
        state = await project_state(api, user, project["id"])
        assert state["status"] == "FAILED"
        assert "never confirmed" in state["errorMessage"]
        assert (await books(engine, user)).balance == 100


@pytest.mark.parametrize(
    ("tasks", "status", "action"),
    [
        (["completed", "completed"], "COMPLETED", "pending_to_completed"),
        (["completed", "error"], "FAILED", "pending_to_failed"),
        (["completed", "in_progress"], "PROCESSING", "pending_to_processing"),
        (None, "FAILED", "pending_to_failed"),
    ],
)
async def test_pending_with_upstream_id_follows_the_video_service(
    own_database: tuple[str, AsyncEngine],
    fake_upstream: tuple[FakeVideoService, str],
    tasks: list[str] | None,
    status: str,
    action: str,
) -> None:
    url, engine = own_database
    fake = fake_upstream[0]
    async with instance(url, fake_upstream[1]) as api:
        user = new_user()
        project = (await api.generate(user, prompt="Unsure [hang]"))["data"]["generateStory"]
        external_id = f"job-{project['id']}"
        if tasks is not None:
            fake.jobs[external_id] = tasks
        async with engine.begin() as conn:  # as if Tx2 had stored the id and then stalled
            await conn.execute(
                text("UPDATE projects SET external_id = :e WHERE id = :id"),
                {"e": external_id, "id": project["id"]},
            )
        await asyncio.sleep(TIMEOUT + 0.1)
        assert await sweep(api.services) == Counter({action: 1})
        assert (await project_state(api, user, project["id"]))["status"] == status
        refunded = status == "FAILED"
        assert (await books(engine, user)).balance == (100 if refunded else 40)


@pytest.mark.parametrize("changes", [True, False], ids=["progress", "heartbeat"])
async def test_reports_keep_a_project_alive_until_it_falls_silent(
    own_database: tuple[str, AsyncEngine],
    fake_upstream: tuple[FakeVideoService, str],
    changes: bool,
) -> None:
    """Every report puts the sweeper off, whether it changes the project (progress) or
    repeats the last one (a heartbeat, same version); silence past the timeout fails it."""
    url, engine = own_database
    async with instance(url, fake_upstream[1]) as api:
        user = new_user()
        project = (await api.generate(user))["data"]["generateStory"]
        versions = []
        for n in range(8):  # a report every third of the timeout: longer than it, all told
            await asyncio.sleep(TIMEOUT / 3)
            beat = {
                "status": "PROCESSING",
                "progress": 10 + n if changes else 90,
                "stage": "render",
            }
            answer = await api.report(projectId=project["id"], **beat)
            versions.append(answer["data"]["updateStatus"]["version"])
            assert await sweep(api.services) == Counter()
        after_first = project["version"] + 1
        assert versions == [after_first + n if changes else after_first for n in range(8)]
        await asyncio.sleep(TIMEOUT + 0.1)  # silence
        assert await sweep(api.services) == Counter({"processing_timed_out": 1})
        state = await project_state(api, user, project["id"])
        assert state["status"] == "FAILED"
        assert "No report from the pipeline" in state["errorMessage"]
        assert (await books(engine, user)).balance == 100


async def test_two_instances_sweeping_at_once_resolve_each_project_once(
    own_database: tuple[str, AsyncEngine], fake_upstream: tuple[FakeVideoService, str]
) -> None:
    url, engine = own_database
    async with instance(url, fake_upstream[1]) as one, instance(url, fake_upstream[1]) as two:
        users = [new_user() for _ in range(10)]
        # A project whose upstream call outlived its 0.2 s on a loaded machine is answered
        # PENDING, and the sweeper fails it as never confirmed: each is still swept once.
        expected: Counter[str] = Counter()
        for user in users:
            await one.grant(user, 100)
            for n in range(5):
                answer = await one.generate(user, quality="SD", prompt=f"S{n}")
                assert "errors" not in answer
                expected[OUTCOME[answer["data"]["generateStory"]["status"]]] += 1
        await asyncio.sleep(TIMEOUT + 0.1)
        first, second = await asyncio.gather(sweep(one.services), sweep(two.services))
        assert first + second == expected
        assert expected.total() == 50
        for user in users:
            state = await books(engine, user)
            assert state.balance == 200
            assert Counter(kind for kind, _, _ in state.ledger) == {
                "GRANT": 2,
                "CHARGE": 5,
                "REFUND": 5,
            }


async def test_every_instance_sweeps_in_the_background(
    own_database: tuple[str, AsyncEngine], fake_upstream: tuple[FakeVideoService, str]
) -> None:
    url, _ = own_database
    async with instance(url, fake_upstream[1], sweep_interval=0.1) as api:
        user = new_user()
        project = (await api.generate(user))["data"]["generateStory"]
        for _ in range(50):
            await asyncio.sleep(0.1)
            if (await project_state(api, user, project["id"]))["status"] == "FAILED":
                break
        assert (await project_state(api, user, project["id"]))["status"] == "FAILED"


async def project_state(api: Api, user: str, project_id: str) -> dict[str, Any]:
    data = await api.data(
        "query($id: ID!) { project(id: $id) { status errorMessage version } }",
        {"id": project_id},
        auth=token(user),
    )
    state: dict[str, Any] = data["project"]
    return state


async def test_a_project_that_speaks_up_once_picked_is_left_alone(
    own_database: tuple[str, AsyncEngine], fake_upstream: tuple[FakeVideoService, str]
) -> None:
    url, engine = own_database
    async with instance(url, fake_upstream[1]) as api:
        user = new_user()
        project = (await api.generate(user))["data"]["generateStory"]
        await asyncio.sleep(TIMEOUT + 0.1)
        silent = timedelta(seconds=TIMEOUT)
        candidates = await _stale(api.services, Status.PROCESSING, silent)
        assert set(candidates) == {uuid.UUID(project["id"])}
        # The pipeline reports between the sweeper's pick and its settling.
        await api.report(projectId=project["id"], status="PROCESSING", progress=50)
        report = Report(Status.FAILED, error_message="silent")
        settled = await _settle(
            api.services, uuid.UUID(project["id"]), Status.PROCESSING, silent, report
        )
        assert settled is False
        assert (await project_state(api, user, project["id"]))["status"] == "PROCESSING"
        assert (await books(engine, user)).balance == 40
