"""The fan-out path renders each event once per selection, and says exactly what
strawberry's ordinary execution says."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from graphql import parse
from websockets.asyncio.client import ClientConnection

from storyline.schema.fanout import SELECTIONS, live_field
from tests.support import Api, new_user, token
from tests.support.watch import connected

FIELDS = "projectId status version progress stage errorMessage resultUrl updatedAt __typename"
PLAIN = (
    f"subscription($id: ID!) {{ watch: projectStatus(projectId: $id) {{ {FIELDS} v: version }} }}"
)
# The same selection with its root field behind a fragment: strawberry's ordinary path.
ORDINARY = (
    "subscription($id: ID!) { ...Root }\n"
    "fragment Root on Subscription { watch: projectStatus(projectId: $id) "
    f"{{ ... on ProjectStatusEvent {{ {FIELDS} v: version }} }} }}"
)


@pytest.mark.parametrize(
    ("query", "served"),
    [
        (PLAIN, True),
        ('subscription { projectStatus(projectId: "x") { status } }', True),
        ('subscription { projectStatus(projectId: "x") { status @include(if: true) } }', True),
        ('subscription { projectStatus(projectId: "x") { ... { a: status } } }', True),
        (ORDINARY, False),
        ("{ price }", False),
        ('subscription { projectStatus(projectId: "x") @include(if: true) { status } }', False),
        ('subscription A { projectStatus(projectId: "x") { status } } query B { price }', False),
    ],
)
def test_only_a_plain_project_status_root_field_is_served(query: str, served: bool) -> None:
    # Whether a document is valid is decided before (checked), as on the ordinary path.
    assert (live_field(parse(query), None) is not None) is served


async def subscribe(ws: ClientConnection, op: str, query: str, project_id: str) -> None:
    payload = {"query": query, "variables": {"id": project_id}}
    await ws.send(json.dumps({"id": op, "type": "subscribe", "payload": payload}))


async def messages_until_complete(ws: ClientConnection, count: int) -> dict[str, list[Any]]:
    """Raw message texts by operation id, until ``count`` operations have completed."""
    seen: dict[str, list[Any]] = {}
    done = 0
    while done < count:
        text = await asyncio.wait_for(ws.recv(), 10)
        message = json.loads(text)
        if message["type"] == "next":
            seen.setdefault(message["id"], []).append(message["payload"])
        elif message["type"] == "complete":
            done += 1
    return seen


async def test_fanout_and_ordinary_execution_send_the_same_data(api: Api) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    async with connected(api.url, token(user)) as ws:
        await subscribe(ws, "fast-1", PLAIN, project["id"])
        await subscribe(ws, "fast-2", PLAIN, project["id"])
        await subscribe(ws, "ordinary", ORDINARY, project["id"])
        await asyncio.sleep(0.3)
        await api.report(projectId=project["id"], status="PROCESSING", progress=20, stage="script")
        await api.report(
            projectId=project["id"], status="FAILED", errorMessage='quotes " and \\ and ünïcode'
        )
        seen = await messages_until_complete(ws, 3)
    assert seen["fast-1"] == seen["fast-2"] == seen["ordinary"]
    versions = [payload["data"]["watch"]["v"] for payload in seen["ordinary"]]
    assert versions == [2, 3, 4]
    assert seen["fast-1"][-1]["data"]["watch"]["errorMessage"] == 'quotes " and \\ and ünïcode'


async def test_fanout_errors_match_the_ordinary_path(api: Api) -> None:
    stranger = new_user()
    project = (await api.generate(new_user()))["data"]["generateStory"]
    async with connected(api.url, token(stranger)) as ws:
        await subscribe(ws, "fast", PLAIN, project["id"])
        await subscribe(ws, "ordinary", ORDINARY, project["id"])
        seen = await messages_until_complete(ws, 2)
    for payloads in seen.values():
        [payload] = payloads
        assert payload["data"] is None
        assert payload["errors"][0]["extensions"] == {"code": "NOT_FOUND"}
        assert payload["errors"][0]["message"] == "Project not found."


async def test_watchers_of_different_projects_share_a_selection_not_their_events(
    api: Api,
) -> None:
    """One document, each project id in its variables: one shared selection (the id picks
    the events, it does not shape them), and each watcher sees its own project only."""
    user = new_user()
    projects = [await api.generate(user, quality="SD") for _ in range(2)]
    first, second = [project["data"]["generateStory"] for project in projects]
    async with connected(api.url, token(user)) as ws:
        await subscribe(ws, "first", PLAIN, first["id"])
        await subscribe(ws, "second", PLAIN, second["id"])
        await asyncio.sleep(0.3)
        # One key for both: no operation name, and no variable that shapes the payload.
        assert [key[1:] for key in SELECTIONS if key[1] == PLAIN] == [(PLAIN, None, "{}")]
        await api.report(projectId=first["id"], status="COMPLETED", resultUrl="https://v/1")
        await api.report(projectId=second["id"], status="FAILED", errorMessage="no")
        seen = await messages_until_complete(ws, 2)
    assert [p["data"]["watch"]["status"] for p in seen["first"]] == ["PROCESSING", "COMPLETED"]
    assert [p["data"]["watch"]["status"] for p in seen["second"]] == ["PROCESSING", "FAILED"]
