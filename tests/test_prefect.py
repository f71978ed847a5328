"""The pipeline client's Prefect integration: real flow runs against a running Storyline.

The client is a distribution of its own (clients/pipeline); its tests that need no
Storyline are there. Flows are sync; each runs in a thread so that the event loop, which
also serves Storyline and the proxies, keeps going while the flow blocks on its HTTP calls.
The temporary Prefect API is conftest's ``prefect_harness``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import httpx
import pytest
from prefect import flow
from prefect.client.schemas.objects import FlowRun, State
from prefect.states import Cancelled, Crashed
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from storyline.auth import Role
from storyline_pipeline.example_flow import STAGES, story_video
from storyline_pipeline.prefect import (
    TOKEN_ENV,
    URL_ENV,
    ReportingHooks,
    ReportRejected,
    report_status,
)
from tests.support import Api, books, new_user, serving, token
from tests.support.logs import logged
from tests.support.watch import connected, messages, start

PIPELINE_TOKEN = token("pipeline", Role.PIPELINE)
FLOW_TIMEOUT = 30


@pytest.fixture
def pipeline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token from the environment, as in a deployment; the URL is each flow's parameter."""
    monkeypatch.setenv(TOKEN_ENV, PIPELINE_TOKEN)
    monkeypatch.delenv(URL_ENV, raising=False)


def graphql(api: Api) -> str:
    return api.url + "/graphql"


async def new_project(api: Api) -> tuple[str, str]:
    """A fresh user's project that the fake video service accepted: (user, project id)."""
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    assert project["status"] == "PROCESSING", project
    return user, project["id"]


async def run_story(project_id: str, **parameters: Any) -> State[str]:
    """The example flow, run in a thread; its final state."""

    def run() -> State[str]:
        return story_video(project_id, step_seconds=0.01, return_state=True, **parameters)

    return await asyncio.wait_for(asyncio.to_thread(run), FLOW_TIMEOUT)


async def project_row(api: Api, project_id: str) -> dict[str, Any]:
    data = await api.data(
        "query P($id: ID!) { project(id: $id) "
        "{ status progress stage errorMessage resultUrl creditsUsed version } }",
        {"id": project_id},
        auth=token("admin", Role.ADMIN),
    )
    project: dict[str, Any] = data["project"]
    return project


@dataclass
class FlakyProxy:
    """Answers 503 to the first ``failures`` requests, then forwards them to Storyline."""

    target: str
    failures: int
    refused: int = 0
    forwarded: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        if self.refused < self.failures:
            self.refused += 1
            return PlainTextResponse("Service Unavailable", status_code=503)
        body = await request.body()
        self.forwarded.append(json.loads(body))
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(
                self.target,
                content=body,
                headers={
                    "Authorization": request.headers.get("authorization", ""),
                    "Content-Type": "application/json",
                },
            )
        return Response(answer.content, answer.status_code, media_type="application/json")

    def reports(self) -> list[dict[str, Any]]:
        return [request["variables"]["input"] for request in self.forwarded]


@asynccontextmanager
async def flaky_proxy(api: Api, failures: int) -> AsyncIterator[tuple[FlakyProxy, str]]:
    """The proxy and its GraphQL URL."""
    proxy = FlakyProxy(graphql(api), failures)
    app = Starlette(routes=[Route("/graphql", proxy.handle, methods=["POST"])])
    async with serving(app) as url:
        yield proxy, url + "/graphql"


@pytest.fixture
def log_records() -> Iterator[list[logging.LogRecord]]:
    """Every log record of Prefect and of this process while the test runs."""
    with logged(logging.DEBUG, "prefect") as records:
        yield records


@pytest.mark.usefixtures("prefect_harness", "pipeline_env")
async def test_flow_reports_progress_then_completion(api: Api) -> None:
    user, project_id = await new_project(api)
    async with connected(api.url, token(user)) as ws:
        await start(ws, project_id)
        stream = messages(ws)
        first = await anext(stream)
        assert first["payload"]["data"]["projectStatus"]["status"] == "PROCESSING"
        run = asyncio.create_task(run_story(project_id, storyline_url=graphql(api)))
        events, last = [], first
        async with asyncio.timeout(FLOW_TIMEOUT):
            async for message in stream:
                last = message
                if message["type"] == "next":
                    assert "errors" not in message["payload"], message
                    events.append(message["payload"]["data"]["projectStatus"])
        state = await run

    assert last["type"] == "complete", last
    assert state.is_completed(), state
    result_url = await state.aresult()
    assert [(e["status"], e["progress"], e["stage"]) for e in events] == [
        *(("PROCESSING", progress, stage) for stage, progress in STAGES),
        ("COMPLETED", 100, "done"),
    ]
    versions = [first["payload"]["data"]["projectStatus"]["version"]] + [
        e["version"] for e in events
    ]
    assert versions == sorted(set(versions))
    assert (
        events[-1]["resultUrl"]
        == result_url
        == f"https://videos.storyline.invalid/{project_id}.mp4"
    )
    # The on_completion hook reported COMPLETED again: accepted, and nothing changed.
    assert (await project_row(api, project_id))["version"] == versions[-1]


@pytest.mark.usefixtures("prefect_harness", "pipeline_env")
async def test_flow_that_raises_ends_failed_and_refunded(api: Api, engine: AsyncEngine) -> None:
    user, project_id = await new_project(api)

    state = await run_story(project_id, fail_at="storyboard", storyline_url=graphql(api))

    assert state.is_failed(), state
    project = await project_row(api, project_id)
    assert project["status"] == "FAILED"
    # Reported by the task up to the last stage that finished, then by on_failure.
    assert (project["progress"], project["stage"]) == (40, "entities")
    assert project["errorMessage"] == "The storyboard stage failed."
    account = await books(engine, user)
    assert account.balance == 100
    assert [kind for kind, _, _ in account.ledger].count("REFUND") == 1
    assert account.ledger[-1] == ("REFUND", project["creditsUsed"], project_id)


@pytest.mark.usefixtures("prefect_harness", "pipeline_env")
async def test_report_refused_with_503_at_first_is_retried_and_lands(
    api: Api, log_records: list[logging.LogRecord]
) -> None:
    _, project_id = await new_project(api)
    async with flaky_proxy(api, failures=3) as (proxy, url):
        state = await run_story(project_id, storyline_url=url, report_delay=0.05)

    assert state.is_completed(), state
    assert proxy.refused == 3
    # Each report reached Storyline once: five from the flow's tasks, one from on_completion.
    assert [(r["status"], r.get("stage")) for r in proxy.reports()] == [
        *(("PROCESSING", stage) for stage, _ in STAGES),
        ("COMPLETED", "done"),
        ("COMPLETED", None),
    ]
    project = await project_row(api, project_id)
    assert (project["status"], project["progress"]) == ("COMPLETED", 100)
    messages = [record.getMessage() for record in log_records]
    assert any("Retry 3/" in message for message in messages)
    assert not any(PIPELINE_TOKEN in message for message in messages)


@flow
def late_progress(project_id: str, url: str) -> dict[str, Any]:
    """A report after the project has ended: the pipeline ran on after the sweeper, say."""
    return report_status(project_id, "PROCESSING", progress=50, url=url, token=PIPELINE_TOKEN)


@pytest.mark.usefixtures("prefect_harness")
async def test_invalid_transition_is_final_not_retried(api: Api) -> None:
    _, project_id = await new_project(api)
    await api.report(projectId=project_id, status="COMPLETED", resultUrl="https://cdn/v.mp4")
    async with flaky_proxy(api, failures=0) as (proxy, url):
        with pytest.raises(ReportRejected) as refused:
            await asyncio.wait_for(asyncio.to_thread(late_progress, project_id, url), FLOW_TIMEOUT)

    assert refused.value.code == "INVALID_TRANSITION"
    assert len(proxy.forwarded) == 1
    assert (await project_row(api, project_id))["status"] == "COMPLETED"


@pytest.mark.parametrize(
    ("hook", "state", "message"),
    [
        ("on_crashed", Crashed(message="Worker lost."), "The pipeline crashed: Worker lost."),
        ("on_cancellation", Cancelled(), "The pipeline was cancelled."),
    ],
)
@pytest.mark.usefixtures("prefect_harness")
async def test_crash_and_cancellation_hooks_fail_and_refund(
    api: Api, engine: AsyncEngine, hook: str, state: State[Any], message: str
) -> None:
    user, project_id = await new_project(api)
    hooks = ReportingHooks(url=graphql(api), token=PIPELINE_TOKEN)
    flow_run = FlowRun(flow_id=uuid4(), parameters={"project_id": project_id})

    await getattr(hooks, hook)(story_video, flow_run, state)

    project = await project_row(api, project_id)
    assert (project["status"], project["errorMessage"]) == ("FAILED", message)
    account = await books(engine, user)
    assert account.balance == 100
    assert [kind for kind, _, _ in account.ledger].count("REFUND") == 1


async def test_hooks_give_up_quietly_when_they_cannot_report(api: Api) -> None:
    hooks = ReportingHooks(url=graphql(api), token=PIPELINE_TOKEN, attempts=2, first_delay=0.01)
    without_project = FlowRun(flow_id=uuid4(), parameters={})
    assert await hooks.report(without_project, status="FAILED") is None
    unconfigured = ReportingHooks()
    with_project = FlowRun(flow_id=uuid4(), parameters={"project_id": str(uuid4())})
    assert await unconfigured.report(with_project, status="FAILED") is None
    async with flaky_proxy(api, failures=10) as (proxy, url):
        unavailable = ReportingHooks(url=url, token=PIPELINE_TOKEN, attempts=2, first_delay=0.01)
        assert await unavailable.report(with_project, status="FAILED") is None
    assert (proxy.refused, proxy.forwarded) == (2, [])
