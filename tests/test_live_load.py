"""projectStatus under load: clients that vanish mid-subscription leave no task, subscriber
or mailbox behind; a thousand watchers of one project all receive its end."""

from __future__ import annotations

import asyncio
import json
import resource
import time
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from storyline.auth import Role
from tests.support import Api, new_user, token
from tests.support.tasks import started_since
from tests.support.waiting import eventually, settled
from tests.support.watch import TRANSPORT_WS, connected, next_event, next_message, start, ws_url

# --- vanished clients ---------------------------------------------------------------------


def _counts(api: Api) -> tuple[int, int, int]:
    broadcast = api.services.broadcast
    return len(asyncio.all_tasks()), broadcast.subscriber_count, len(broadcast.mailboxes)


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
    before = await settled(lambda: _counts(api))
    tasks = asyncio.all_tasks()
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

    await eventually(lambda: _counts(api)[1:] == before[1:] and not started_since(tasks), within=5)
    after = _counts(api)
    assert after[1:] == before[1:], f"(subscribers, mailboxes): before {before}, after {after}"
    assert not started_since(tasks), started_since(tasks)


# --- a thousand watchers -----------------------------------------------------------------


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
