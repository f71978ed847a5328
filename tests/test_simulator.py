"""The built-in simulator answers only the holder of the upstream token, as a video service
would: anyone else could otherwise make it send pipeline reports on any project."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from storyline.auth import Role
from tests.support import Api, bearer, new_user, storyline, token

STEP = 0.05
JOB_PATH = "/simulator/api/v1/project/video"
PROJECT = "query Project($id: ID!) { project(id: $id) { status version progress } }"


def job(project_id: str) -> dict[str, Any]:
    return {"config": {"prompt": "A forged job"}, "metadata": {"storyline_project_id": project_id}}


async def project_state(api: Api, project_id: str) -> dict[str, Any]:
    data = await api.data(PROJECT, {"id": project_id}, auth=token("admin", Role.ADMIN))
    project: dict[str, Any] = data["project"]
    return project


async def completed(api: Api, project_id: str) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        while True:
            state = await project_state(api, project_id)
            if state["status"] == "COMPLETED":
                return state
            await asyncio.sleep(STEP)

    return await asyncio.wait_for(poll(), 10)


@pytest.fixture
async def simulated(database_url: str, tmp_path: Path) -> Any:
    """Storyline with the built-in simulator and no upstream token configured."""
    async with storyline(
        database_url, upstream_token="", data_dir=tmp_path, simulator_step_seconds=STEP
    ) as instance:
        yield instance


async def test_a_story_goes_through_the_simulator_with_the_generated_token(
    simulated: Api, tmp_path: Path
) -> None:
    project = (await simulated.generate(new_user()))["data"]["generateStory"]
    assert project["status"] in ("PROCESSING", "COMPLETED"), project
    assert (await completed(simulated, project["id"]))["progress"] == 100
    generated = (tmp_path / "upstream-token").read_text().strip()
    assert len(generated) >= 32


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Basic dXNlcjpwYXNz", "pipeline-token"],
)
async def test_the_simulator_refuses_a_job_without_the_upstream_token(
    api: Api, simulated: Api, tmp_path: Path, authorization: str | None
) -> None:
    # A project on another instance (the fake video service never reports on it).
    project = (await api.generate(new_user()))["data"]["generateStory"]
    before = await project_state(api, project["id"])
    assert before["status"] == "PROCESSING"
    if authorization == "pipeline-token":  # Storyline's own tokens are not the upstream's
        authorization = bearer("pipeline", Role.PIPELINE)
    headers = {} if authorization is None else {"Authorization": authorization}

    for response in (
        await simulated.http.post(JOB_PATH, json=job(project["id"]), headers=headers),
        await simulated.http.get("/simulator/api/v1/project/sim-anything", headers=headers),
    ):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"

    await asyncio.sleep(10 * STEP)  # the simulated pipeline's whole run, twice over
    assert await project_state(api, project["id"]) == before

    # The holder of the token is served: the same job is accepted and run.
    upstream_token = (tmp_path / "upstream-token").read_text().strip()
    accepted = await simulated.http.post(
        JOB_PATH, json=job(project["id"]), headers={"Authorization": f"Bearer {upstream_token}"}
    )
    assert accepted.status_code == 201, accepted.text
    assert (await completed(api, project["id"]))["version"] > before["version"]
