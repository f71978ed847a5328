"""projectStatus from the outside: several instances, and texts too large for a notification.

- two ``storyline serve`` processes on one database: a change made through one reaches
  a watcher connected to the other;
- an error message far larger than a NOTIFY payload still reaches the watcher.

A client nobody here wrote: test_live_gql.py; load (vanished clients, a thousand
watchers): test_live_load.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from storyline.auth import Role
from tests.support import GENERATE, REPORT, Api, books, new_user, token
from tests.support.books import money_violations
from tests.support.databases import migrated_database
from tests.support.fakes import FakeVideoService
from tests.support.processes import two_instances
from tests.support.waiting import background
from tests.support.watch import collect, connected, next_event, start, steps

PROJECT_QUERY = "query ($id: ID!) { project(id: $id) { status errorMessage } }"
NEWEST_PROJECT = "{ projects(first: 1) { edges { node { id status } } } }"


# --- two instances, one database --------------------------------------------------------


@pytest.mark.slow
async def test_a_watcher_on_one_instance_sees_every_change_made_through_another(
    server_url: str, fake_upstream: tuple[FakeVideoService, str], tmp_path: Path
) -> None:
    database_url = await migrated_database(server_url)
    async with two_instances(database_url, fake_upstream[1], tmp_path) as (one, two):
        user = new_user()
        pipeline = token("pipeline", Role.PIPELINE)
        # The fake video service holds "[hang]" requests for 3 s (Storyline waits 10 s):
        # long enough to start watching the new project while it is still PENDING.
        generate = two.data(GENERATE, {"input": {"prompt": "A cat [hang]"}}, auth=token(user))
        async with background(generate) as generating:
            project_id = ""

            async def find_project() -> bool:
                nonlocal project_id
                edges = (await one.data(NEWEST_PROJECT, auth=token(user)))["projects"]
                if edges["edges"]:
                    project_id = edges["edges"][0]["node"]["id"]
                return bool(project_id)

            async with asyncio.timeout(10):
                while True:
                    if await find_project():
                        break
                    await asyncio.sleep(0.02)
            async with connected(one.url, token(user)) as ws:
                await start(ws, project_id)
                first = await asyncio.wait_for(next_event(ws), 5)
                async with background(collect(ws)) as watching:
                    created = (await asyncio.wait_for(generating, 15))["generateStory"]
                    assert (created["id"], created["status"]) == (project_id, "PROCESSING")
                    reports: list[dict[str, Any]] = [
                        {"status": "PROCESSING", "progress": progress, "stage": stage}
                        for progress, stage in ((25, "script"), (60, "storyboard"), (90, "render"))
                    ]
                    reports.append(
                        {"status": "COMPLETED", "resultUrl": "https://cdn.example/two.mp4"}
                    )
                    for report in reports:
                        variables = {"input": {"projectId": project_id, **report}}
                        await two.data(REPORT, variables, auth=pipeline)
                    rest = await asyncio.wait_for(watching, 10)
        events = [first, *rest]
        assert steps(events) == [
            ("PENDING", 1, None),
            ("PROCESSING", 2, None),
            ("PROCESSING", 3, 25),
            ("PROCESSING", 4, 60),
            ("PROCESSING", 5, 90),
            ("COMPLETED", 6, 100),
        ]
        assert events[-1]["resultUrl"] == "https://cdn.example/two.mp4"
        assert await money_violations(database_url) == {}


# --- a report too large for a notification -------------------------------------------------


async def test_a_huge_error_message_still_reaches_the_watcher(
    api: Api, engine: AsyncEngine
) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    message = "x" * 100_000
    async with connected(api.url, token(user)) as ws:
        await start(ws, project["id"])
        first = await asyncio.wait_for(next_event(ws), 5)
        async with background(collect(ws)) as watching:
            answer = await api.report(
                projectId=project["id"], status="FAILED", errorMessage=message
            )
            assert "errors" not in answer, {**answer, "data": "..."}
            events = await asyncio.wait_for(watching, 10)
    assert steps([first]) == [("PROCESSING", 2, None)]
    assert [(e["status"], e["version"]) for e in events] == [("FAILED", 3)]
    # The notification carried the message cut to fit; the watcher is sent the row's state.
    assert events[0]["errorMessage"] == message
    stored = await api.data(PROJECT_QUERY, {"id": project["id"]}, auth=token(user))
    assert stored["project"]["status"] == "FAILED"
    assert stored["project"]["errorMessage"] == message
    signup = api.services.settings.signup_credits
    ledger = await books(engine, user)
    assert ledger.balance == signup
    assert ledger.ledger == [
        ("GRANT", signup, None),
        ("CHARGE", -project["creditsUsed"], project["id"]),
        ("REFUND", project["creditsUsed"], project["id"]),
    ]


async def test_texts_that_grow_when_escaped_still_reach_the_watcher(api: Api) -> None:
    """The payload stays under 8000 bytes after JSON escaping (a control character takes 6)."""
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    url = "https://cdn.example/" + "\x01" * 2000  # control characters have no place in a URL
    refused = await api.report(projectId=project["id"], status="COMPLETED", resultUrl=url)
    assert [e["extensions"]["code"] for e in refused["errors"]] == ["BAD_USER_INPUT"]

    message = "\x01" * 5000  # 30 kB once escaped
    async with connected(api.url, token(user)) as ws:
        await start(ws, project["id"])
        await asyncio.wait_for(next_event(ws), 5)
        async with background(collect(ws)) as watching:
            answer = await api.report(
                projectId=project["id"], status="FAILED", stage="\x02" * 200, errorMessage=message
            )
            assert "errors" not in answer, answer
            events = await asyncio.wait_for(watching, 10)
    [failed] = events
    assert (failed["status"], failed["version"]) == ("FAILED", 3)
    # The notification was cut to fit; the watcher is sent the row's state, whole.
    assert failed["errorMessage"] == message
    assert failed["stage"] == "\x02" * 200
    assert answer["data"]["updateStatus"]["errorMessage"] == message
