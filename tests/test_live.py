"""projectStatus from the outside: a third-party client, several instances, and load.

- gql's WebsocketsTransport (a client nobody here wrote) over both subprotocols;
- two ``storyline serve`` processes on one database: a change made through one reaches
  a watcher connected to the other;
- clients that vanish mid-subscription leave no task, subscriber or mailbox behind;
- an error message far larger than a NOTIFY payload still reaches the watcher;
- a thousand watchers of one project all receive its end.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import websockets
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from storyline.auth import Role
from tests.support import GENERATE, REPORT, Api, books, new_user, token
from tests.support.books import money_violations
from tests.support.databases import migrated_database
from tests.support.fakes import FakeVideoService
from tests.support.processes import two_instances
from tests.support.watch import (
    LEGACY_WS,
    SUBSCRIBE,
    TRANSPORT_WS,
    collect,
    connected,
    next_event,
    next_message,
    start,
    ws_url,
)

T = TypeVar("T")

STORYLINE = Path(sys.executable).parent / "storyline"
WATCH = gql(SUBSCRIBE)
PROTOCOLS = [TRANSPORT_WS, LEGACY_WS]
PROJECT_QUERY = "query ($id: ID!) { project(id: $id) { status errorMessage } }"
NEWEST_PROJECT = "{ projects(first: 1) { edges { node { id status } } } }"


# --- helpers ------------------------------------------------------------------------------


@asynccontextmanager
async def background(coro: Coroutine[Any, Any, T]) -> AsyncIterator[asyncio.Task[T]]:
    """A task that is cancelled (if still running) and awaited on the way out, come what may."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def eventually(predicate: Callable[[], bool], *, within: float) -> bool:
    """Poll ``predicate()`` until true or ``within`` seconds have passed; the last answer."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return bool(predicate())
        await asyncio.sleep(0.02)
    return True


def steps(events: list[dict[str, Any]]) -> list[tuple[str, int, int | None]]:
    return [(e["status"], e["version"], e["progress"]) for e in events]


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


# --- 1. a client nobody here wrote ---------------------------------------------------------


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


# --- 2. two instances, one database --------------------------------------------------------


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


# --- 3. vanished clients ---------------------------------------------------------------------


def _counts(api: Api) -> tuple[int, int, int]:
    broadcast = api.services.broadcast
    return len(asyncio.all_tasks()), broadcast.subscriber_count, len(broadcast.mailboxes)


async def _settled(api: Api) -> tuple[int, int, int]:
    """The counts once they have not moved for a while (earlier tests may still wind down)."""
    last = _counts(api)
    stable_since = time.monotonic()
    deadline = stable_since + 10
    while time.monotonic() - stable_since < 0.5 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now = _counts(api)
        if now != last:
            last, stable_since = now, time.monotonic()
    return last


async def test_clients_that_vanish_mid_subscription_leave_nothing_behind(api: Api) -> None:
    cycles, concurrency = 500, 25
    # Two owners: each opens more subscriptions in turn than the per-user limit allows at
    # once, so a subscription still counted against its owner would make cycles fail too.
    owners = 2
    assert cycles // owners > api.services.settings.max_subscriptions_per_user
    targets: list[tuple[str, str]] = []  # (project id, owner's token)
    for _ in range(owners):
        user = new_user()
        project = (await api.generate(user))["data"]["generateStory"]
        assert project["status"] == "PROCESSING"
        targets.append((project["id"], token(user)))
    before = await _settled(api)
    during: list[tuple[int, int, int]] = []
    gate = asyncio.Semaphore(concurrency)

    async def cycle(n: int) -> None:
        project_id, auth = targets[n % len(targets)]
        async with gate, connected(api.url, auth) as ws:
            await start(ws, project_id)
            event = await asyncio.wait_for(next_event(ws), 10)
            assert (event["projectId"], event["status"]) == (project_id, "PROCESSING")
            during.append(_counts(api))
            assert project_id in api.services.broadcast.mailboxes
            if n % 2 == 0:
                ws.transport.abort()  # the TCP connection just goes: no close frame, no complete
            # else: a close frame, but no complete for the subscription

    async with asyncio.timeout(120):
        await asyncio.gather(*(cycle(n) for n in range(cycles)))
    assert len(during) == cycles
    # While a subscription is live it is counted: a leak could not hide from these numbers.
    assert all(subs > before[1] for _, subs, _ in during), "a live subscriber was not counted"
    assert max(subs for _, subs, _ in during) >= before[1] + 2
    assert max(boxes for _, _, boxes in during) >= before[2] + 2
    assert all(tasks > before[0] for tasks, _, _ in during)

    await eventually(lambda: _counts(api) == before, within=5)
    after = _counts(api)
    assert after == before, f"(tasks, subscribers, mailboxes): before {before}, after {after}"


# --- 4. a report too large for a notification -------------------------------------------------


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
    shown = events[0]["errorMessage"]
    assert shown, "the event carries no error message"
    assert len(shown) <= 1000, len(shown)
    assert message.startswith(shown)
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
    assert 0 < len(failed["errorMessage"]) < len(message)
    assert message.startswith(failed["errorMessage"])
    assert answer["data"]["updateStatus"]["errorMessage"] == message


# --- 5. a thousand watchers -----------------------------------------------------------------


def _allow_open_files(needed: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE towards ``needed`` (up to the hard limit); the old limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    raised, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert raised == resource.RLIM_INFINITY or raised >= needed, (
        f"{needed} open files are needed; the hard limit is {hard}"
    )
    return soft, hard


async def _open_watcher(url: str, auth: str, project_id: str) -> ClientConnection:
    ws = await websockets.connect(
        ws_url(url), subprotocols=[Subprotocol(TRANSPORT_WS)], compression=None, ping_interval=None
    )
    try:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {auth}"}}
        await ws.send(json.dumps(init))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "connection_ack", ack
        await start(ws, project_id)
    except BaseException:
        await ws.close()
        raise
    return ws


async def test_a_thousand_watchers_all_receive_the_end(api: Api) -> None:
    watchers = 1000
    limits = _allow_open_files(4 * watchers + 1024)
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    # A user may hold only so many live subscriptions at once: the owner holds 100 of them,
    # and 900 staff users (who may watch any project) one each.
    owned = min(100, api.services.settings.max_subscriptions_per_user)
    auths = [token(user) for _ in range(owned)] + [
        token(f"staff-{n}", Role.ADMIN if n % 2 else Role.PIPELINE) for n in range(watchers - owned)
    ]
    sockets: list[ClientConnection] = []
    firsts = 0
    finished_at: list[float] = []

    async def read(ws: ClientConnection) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Every event, and the message that ended the operation."""
        nonlocal firsts
        events: list[dict[str, Any]] = []
        while True:
            message = await next_message(ws)
            if message["type"] != "next":
                return events, message
            assert "errors" not in message["payload"], message
            event = message["payload"]["data"]["projectStatus"]
            events.append(event)
            if len(events) == 1:
                firsts += 1
            if event["status"] == "COMPLETED":
                finished_at.append(time.perf_counter())

    gate = asyncio.Semaphore(100)

    async def open_one(auth: str) -> None:
        async with gate:
            sockets.append(await _open_watcher(api.url, auth, project["id"]))

    started = time.perf_counter()
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(open_one(auth) for auth in auths))
        assert len(sockets) == watchers
        readers = [asyncio.create_task(read(ws)) for ws in sockets]
        try:
            await eventually(
                lambda: firsts == watchers or any(r.done() for r in readers), within=30
            )
            ended = [r.result() for r in readers if r.done()]
            assert not ended, f"{len(ended)} subscriptions ended early, e.g. {ended[0]}"
            assert firsts == watchers, f"only {firsts} of {watchers} watchers got a first event"
            subscribed = time.perf_counter()
            assert api.services.broadcast.subscriber_count >= watchers
            answer = await api.report(projectId=project["id"], status="PROCESSING", progress=50)
            assert "errors" not in answer, answer
            reported = time.perf_counter()
            answer = await api.report(
                projectId=project["id"], status="COMPLETED", resultUrl="https://cdn.example/z.mp4"
            )
            assert "errors" not in answer, answer
            answered = time.perf_counter()
            async with asyncio.timeout(30):
                results = await asyncio.gather(*readers)
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)

    ends = [end["type"] for _, end in results]
    assert ends == ["complete"] * watchers
    for events, _ in results:
        assert events[0]["status"] == "PROCESSING", events
        assert events[-1]["status"] == "COMPLETED", events
        assert events[-1]["resultUrl"] == "https://cdn.example/z.mp4"
        versions = [e["version"] for e in events]
        assert versions == sorted(set(versions)), versions
    assert len(finished_at) == watchers
    print(
        f"\n{watchers} watchers: connected, subscribed and first event in "
        f"{subscribed - started:.2f} s; from sending the COMPLETED report: its answer "
        f"{answered - reported:.3f} s, first watcher {min(finished_at) - reported:.3f} s, "
        f"last watcher {max(finished_at) - reported:.3f} s"
    )
