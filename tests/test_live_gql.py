"""projectStatus through a client nobody here wrote: gql's WebsocketsTransport, over both
subprotocols."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from storyline.auth import Role
from tests.support import Api, new_user, token
from tests.support.waiting import background, eventually
from tests.support.watch import LEGACY_WS, SUBSCRIBE, TRANSPORT_WS, steps, ws_url

WATCH = gql(SUBSCRIBE)
PROTOCOLS = [TRANSPORT_WS, LEGACY_WS]


class GqlWatch:
    """One projectStatus subscription through gql's own websockets transport."""

    def __init__(self, http_url: str, auth: str, project_id: str, protocol: str) -> None:
        self.transport = WebsocketsTransport(
            url=ws_url(http_url),
            init_payload={"Authorization": f"Bearer {auth}"},
            subprotocols=[protocol],
        )
        self.request = GraphQLRequest(WATCH, variable_values={"id": project_id})
        self.events: list[dict[str, Any]] = []
        self.negotiated: str | None = None

    async def run(self) -> list[dict[str, Any]]:
        """Every event, returned once gql's generator ends: when the server completes."""
        async with Client(transport=self.transport) as session:
            self.negotiated = self.transport.subprotocol
            async for result in session.subscribe(self.request):
                self.events.append(result["projectStatus"])
        return self.events


@asynccontextmanager
async def gql_watching(
    http_url: str, auth: str, project_id: str, protocol: str
) -> AsyncIterator[tuple[GqlWatch, asyncio.Task[list[dict[str, Any]]]]]:
    """A gql subscription running in the background, up to its first event."""
    watch = GqlWatch(http_url, auth, project_id, protocol)
    async with background(watch.run()) as task:
        await eventually(lambda: bool(watch.events) or task.done(), within=10)
        if task.done() and not watch.events:
            task.result()  # raises what went wrong
            raise AssertionError("the subscription completed without an event")
        assert watch.events, "no first event within 10 s"
        yield watch, task


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_gql_client_sees_current_state_then_each_change_then_complete(
    api: Api, protocol: str
) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    assert project["status"] == "PROCESSING"
    async with gql_watching(api.url, token(user), project["id"], protocol) as (watch, task):
        for progress, stage in ((15, "script"), (40, "entities"), (65, "storyboard")):
            answer = await api.report(
                projectId=project["id"], status="PROCESSING", progress=progress, stage=stage
            )
            assert "errors" not in answer, answer
        answer = await api.report(
            projectId=project["id"], status="COMPLETED", resultUrl="https://cdn.example/x.mp4"
        )
        assert "errors" not in answer, answer
        # gql's generator ends only when the server completes the operation.
        async with asyncio.timeout(10):
            events = await task
    assert watch.negotiated == protocol
    assert steps(events) == [
        ("PROCESSING", 2, None),
        ("PROCESSING", 3, 15),
        ("PROCESSING", 4, 40),
        ("PROCESSING", 5, 65),
        ("COMPLETED", 6, 100),
    ]
    assert [e["stage"] for e in events[1:4]] == ["script", "entities", "storyboard"]
    assert {e["projectId"] for e in events} == {project["id"]}
    assert events[-1]["resultUrl"] == "https://cdn.example/x.mp4"
    # Completed server-side, so nothing stays registered for it.
    assert await eventually(lambda: project["id"] not in api.services.broadcast.mailboxes, within=5)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_gql_client_watching_someone_elses_project_gets_not_found(
    api: Api, protocol: str
) -> None:
    project = (await api.generate(new_user()))["data"]["generateStory"]
    for project_id in (project["id"], "00000000-0000-4000-8000-000000000000"):
        watch = GqlWatch(api.url, token(new_user()), project_id, protocol)
        with pytest.raises(TransportQueryError) as refused:
            async with asyncio.timeout(10):
                await watch.run()
        assert watch.events == []
        assert refused.value.errors is not None, refused.value
        assert refused.value.errors[0]["extensions"]["code"] == "NOT_FOUND", refused.value.errors


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_gql_client_with_a_staff_role_may_watch_any_project(api: Api, protocol: str) -> None:
    project = (await api.generate(new_user()))["data"]["generateStory"]
    pipeline = token("pipeline-watcher", Role.PIPELINE)
    admin = token("admin-watcher", Role.ADMIN)
    async with (
        gql_watching(api.url, pipeline, project["id"], protocol) as (_, by_pipeline),
        gql_watching(api.url, admin, project["id"], protocol) as (_, by_admin),
    ):
        answer = await api.report(
            projectId=project["id"], status="COMPLETED", resultUrl="https://cdn.example/y.mp4"
        )
        assert "errors" not in answer, answer
        async with asyncio.timeout(10):
            seen = [await by_pipeline, await by_admin]
    for events in seen:
        assert steps(events) == [("PROCESSING", 2, None), ("COMPLETED", 3, 100)]
