"""updateStatus: the pipeline's reports through the state machine, by either id."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Api, books, new_user, row_counts


async def start(api: Api) -> tuple[str, dict[str, Any]]:
    user = new_user()
    project: dict[str, Any] = (await api.generate(user))["data"]["generateStory"]
    return user, project


async def test_progress_then_completed(api: Api, engine: AsyncEngine) -> None:
    user, project = await start(api)
    first = await api.report(
        projectId=project["id"], status="PROCESSING", progress=30, stage="script"
    )
    moved = first["data"]["updateStatus"]
    assert (moved["progress"], moved["stage"], moved["version"]) == (30, "script", 3)

    done = await api.report(
        externalId=project["externalId"], status="COMPLETED", resultUrl="https://cdn.example/1.mp4"
    )
    completed = done["data"]["updateStatus"]
    assert completed["status"] == "COMPLETED"
    assert (completed["resultUrl"], completed["progress"], completed["version"]) == (
        "https://cdn.example/1.mp4",
        100,
        4,
    )
    assert completed["updatedAt"] > moved["updatedAt"]
    assert (await books(engine, user)).balance == 40


async def test_a_repeated_terminal_report_changes_nothing(api: Api, engine: AsyncEngine) -> None:
    user, project = await start(api)
    failed = await api.report(projectId=project["id"], status="FAILED", errorMessage="boom")
    again = await api.report(projectId=project["id"], status="FAILED", errorMessage="other")
    assert again["data"]["updateStatus"] == failed["data"]["updateStatus"]
    assert again["data"]["updateStatus"]["errorMessage"] == "boom"
    assert (await books(engine, user)).balance == 100


@pytest.mark.parametrize(
    ("first", "then"),
    [
        ("COMPLETED", "FAILED"),
        ("FAILED", "COMPLETED"),
        ("COMPLETED", "PROCESSING"),
        ("FAILED", "PENDING"),
    ],
)
async def test_a_move_away_from_a_terminal_status_is_refused(
    api: Api, engine: AsyncEngine, first: str, then: str
) -> None:
    user, project = await start(api)
    ended = (await api.report(projectId=project["id"], status=first))["data"]["updateStatus"]
    before = await books(engine, user)
    body = await api.report(projectId=project["id"], status=then, progress=5)
    assert body["errors"][0]["extensions"]["code"] == "INVALID_TRANSITION"
    assert body["data"] is None
    assert await books(engine, user) == before
    after = await api.report(projectId=project["id"], status=first)
    assert after["data"]["updateStatus"] == ended


async def test_a_step_back_to_pending_is_refused(api: Api) -> None:
    _, project = await start(api)
    body = await api.report(projectId=project["id"], status="PENDING")
    assert body["errors"][0]["extensions"] == {
        "code": "INVALID_TRANSITION",
        "current": "PROCESSING",
        "reported": "PENDING",
    }


async def test_an_out_of_order_progress_report_does_not_move_progress_back(api: Api) -> None:
    _, project = await start(api)
    await api.report(projectId=project["id"], status="PROCESSING", progress=65, stage="storyboard")
    late = await api.report(
        projectId=project["id"], status="PROCESSING", progress=15, stage="script"
    )
    kept = late["data"]["updateStatus"]
    assert (kept["progress"], kept["stage"], kept["version"]) == (65, "storyboard", 3)


async def test_a_report_for_an_unknown_project_is_not_found(api: Api, engine: AsyncEngine) -> None:
    before = await row_counts(engine)
    for naming in (
        {"projectId": "00000000-0000-4000-8000-000000000000"},
        {"externalId": "never-created"},
    ):
        body = await api.report(status="FAILED", **naming)
        assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert await row_counts(engine) == before
