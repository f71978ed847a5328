"""projectStatus over both WebSocket subprotocols, driven by raw messages."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from storyline.auth import Role
from tests.support import Api, bearer, new_user, storyline, token
from tests.support.logs import errors_logged
from tests.support.watch import (
    LEGACY_WS,
    SUBSCRIBE,
    TRANSPORT_WS,
    close_frame,
    collect,
    connected,
    messages,
    next_message,
    start,
    ws_url,
)

EXPIRED = token("x", ttl=-5)


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_current_state_then_each_change_in_order_then_complete(
    api: Api, protocol: str
) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    async with connected(api.url, token(user), protocol) as ws:
        await start(ws, project["id"])
        watching = asyncio.create_task(collect(ws))
        await asyncio.sleep(0.2)
        for progress, stage in ((15, "script"), (40, "entities"), (65, "storyboard")):
            await api.report(
                projectId=project["id"], status="PROCESSING", progress=progress, stage=stage
            )
        await api.report(projectId=project["id"], status="COMPLETED", resultUrl="https://cdn/x.mp4")
        events = await asyncio.wait_for(watching, 10)
    assert [(e["status"], e["version"], e["progress"]) for e in events] == [
        ("PROCESSING", 2, None),
        ("PROCESSING", 3, 15),
        ("PROCESSING", 4, 40),
        ("PROCESSING", 5, 65),
        ("COMPLETED", 6, 100),
    ]
    assert events[-1]["resultUrl"] == "https://cdn/x.mp4"
    assert events[0]["projectId"] == project["id"]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": bearer("x", ttl=-5)},
    ],
    ids=["missing", "malformed", "expired"],
)
async def test_graphql_transport_ws_refuses_a_bad_token_with_4403(
    api: Api, payload: dict[str, str]
) -> None:
    async with websockets.connect(ws_url(api.url), subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


async def test_graphql_ws_refuses_a_bad_token_with_connection_error(api: Api) -> None:
    async with websockets.connect(ws_url(api.url), subprotocols=[Subprotocol(LEGACY_WS)]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        refusal = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert refusal["type"] == "connection_error"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)


async def test_a_subscription_before_connection_init_is_refused(api: Api) -> None:
    async with websockets.connect(ws_url(api.url), subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
        await start(ws, "00000000-0000-4000-8000-000000000000")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_someone_elses_project_is_not_found(api: Api, protocol: str) -> None:
    project = (await api.generate(new_user()))["data"]["generateStory"]
    for project_id in (project["id"], "not-a-uuid", "00000000-0000-4000-8000-000000000000"):
        async with connected(api.url, token(new_user()), protocol) as ws:
            await start(ws, project_id)
            received = [m async for m in messages(ws)]
        payload = received[0]["payload"]
        assert payload["data"] is None
        assert payload["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_staff_may_watch_any_project_and_a_finished_one_completes_at_once(
    api: Api,
) -> None:
    project = (await api.generate(new_user()))["data"]["generateStory"]
    await api.report(projectId=project["id"], status="FAILED", errorMessage="no GPU")
    for role in (Role.PIPELINE, Role.ADMIN):
        async with connected(api.url, token("staff", role)) as ws:
            await start(ws, project["id"])
            events = await asyncio.wait_for(collect(ws), 5)
        assert [(e["status"], e["errorMessage"]) for e in events] == [("FAILED", "no GPU")]


async def test_one_connection_may_hold_a_bounded_number_of_subscriptions(api: Api) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    limit = api.services.settings.max_subscriptions_per_connection
    async with connected(api.url, token(user)) as ws:
        for n in range(limit):
            await start(ws, project["id"], op=str(n))
        firsts: set[str] = set()
        while len(firsts) < limit:
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if message["type"] == "next":
                firsts.add(message["id"])
        await start(ws, project["id"], op="one-too-many")
        refusal = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert refusal["id"] == "one-too-many", refusal
        assert refusal["type"] == "error"
        assert "limit" in refusal["payload"][0]["message"].lower()


async def test_an_expired_token_ends_what_its_websocket_may_do(api: Api) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    async with connected(api.url, token(user, ttl=2)) as ws:
        await start(ws, project["id"], op="watch")
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert first["type"] == "next"
        await asyncio.sleep(2.5)  # the token expires; the socket stays open
        await api.report(projectId=project["id"], status="PROCESSING", progress=30)
        ended = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
        assert ended[0]["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert ended[1] == {"id": "watch", "type": "complete"}
        query = "{ me { balance } }"
        await ws.send(json.dumps({"id": "q", "type": "subscribe", "payload": {"query": query}}))
        refused = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert refused["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_malformed_subscribe_message_does_not_crash_the_connection(api: Api) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    async with connected(api.url, token(user)) as ws:
        bad = {"id": "bad", "type": "subscribe", "payload": {"query": ["not", "text"]}}
        await ws.send(json.dumps(bad))
        await start(ws, project["id"], op="good")
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if message.get("id") == "good":
                break
        assert message["type"] == "next"


async def test_graphql_ws_a_second_connection_init_ends_the_connection(api: Api) -> None:
    user = new_user()
    for again in ({"Authorization": bearer(user)}, {"Authorization": "Bearer not-a-token"}):
        async with connected(api.url, token(user), LEGACY_WS) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": again}))
            refusal = await next_message(ws, 5)
            assert refusal["type"] == "connection_error", refusal
            assert "initialisation" in refusal["payload"]["message"]
            assert (await close_frame(ws)).code == 4429


async def test_graphql_ws_leaves_no_task_behind_its_socket(api: Api) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    ours = asyncio.current_task()
    before = asyncio.all_tasks()
    with errors_logged() as errors:
        async with connected(api.url, token(user), LEGACY_WS) as ws:
            await start(ws, project["id"])
            assert (await next_message(ws, 5))["type"] == "data"
            again = {"type": "connection_init", "payload": {"Authorization": bearer(user)}}
            for _ in range(3):  # strawberry acknowledges each, with a keep-alive of its own
                await ws.send(json.dumps(again))
            with suppress(websockets.ConnectionClosed, TimeoutError):
                while True:  # until the server closes, or has answered them all
                    await asyncio.wait_for(ws.recv(), 1)
        # Every task the server started for the socket ends once it is closed: the
        # connection's own, and all it started.
        started = asyncio.all_tasks() - before - {ours}
        if started:
            await asyncio.wait(started, timeout=5)
        left = asyncio.all_tasks() - before - {ours}
    assert not left, [task.get_coro() for task in left]
    assert not errors


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_socket_without_connection_init_is_closed_with_4408(
    database_url: str, protocol: str
) -> None:
    async with (
        storyline(database_url, ws_init_timeout=0.5) as api,
        websockets.connect(ws_url(api.url), subprotocols=[Subprotocol(protocol)]) as ws,
    ):
        opened = asyncio.get_running_loop().time()
        closed = await close_frame(ws)
        waited = asyncio.get_running_loop().time() - opened
    assert closed.code == 4408
    assert 0.4 <= waited < 3, waited


NOT_STRINGS = [["1"], {"id": "1"}, 1, None]
NOT_STRING_IDS = ["list", "object", "integer", "null"]


@asynccontextmanager
async def sent_with_id(
    api: Api, protocol: str, kind: str, id_: object
) -> AsyncIterator[tuple[ClientConnection, list[logging.LogRecord]]]:
    """A socket that has sent a ``kind`` message with ``id_`` for a real subscription, and
    the ERROR records logged meanwhile."""
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    payload = {"query": SUBSCRIBE, "variables": {"id": project["id"]}}
    with errors_logged() as errors:
        async with connected(api.url, token(user), protocol) as ws:
            await ws.send(json.dumps({"id": id_, "type": kind, "payload": payload}))
            yield ws, errors


@pytest.mark.parametrize("kind", ["subscribe", "complete"])
@pytest.mark.parametrize("bad", NOT_STRINGS, ids=NOT_STRING_IDS)
async def test_graphql_transport_ws_closes_4400_on_an_id_that_is_not_a_string(
    api: Api, kind: str, bad: object
) -> None:
    async with sent_with_id(api, TRANSPORT_WS, kind, bad) as (ws, errors):
        closed = await close_frame(ws)
    assert closed.code == 4400
    assert "id" in closed.reason
    assert not errors


@pytest.mark.parametrize("kind", ["start", "stop"])
@pytest.mark.parametrize("bad", NOT_STRINGS, ids=NOT_STRING_IDS)
async def test_graphql_ws_refuses_an_id_that_is_not_a_string(
    api: Api, kind: str, bad: object
) -> None:
    async with sent_with_id(api, LEGACY_WS, kind, bad) as (ws, errors):
        refusal = await next_message(ws, 5)
        assert refusal["type"] == "connection_error", refusal
        assert "id" in refusal["payload"]["message"]
        assert (await close_frame(ws)).code == 4400
    assert not errors


MALFORMED = {  # strawberry's handlers raise on all but a subscribe without a query
    "not an object": lambda kind: [kind, "1"],
    "payload not an object": lambda kind: {"id": "1", "type": kind, "payload": "{ price }"},
    "payload without a query": lambda kind: {"id": "1", "type": kind, "payload": {}},
}


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
@pytest.mark.parametrize("malformed", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_message_is_a_protocol_error(
    api: Api, protocol: str, malformed: Callable[[str], object]
) -> None:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    with errors_logged() as errors:
        async with connected(api.url, token(new_user()), protocol) as ws:
            await ws.send(json.dumps(malformed(kind)))
            if protocol == LEGACY_WS:
                assert (await next_message(ws, 5))["type"] == "connection_error"
            closed = await close_frame(ws)
    assert closed.code == 4400
    assert closed.reason
    assert not errors


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_two_operations_without_an_operation_name_are_refused(
    api: Api, protocol: str
) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    watch = "subscription {name}($id: ID!) {{ projectStatus(projectId: $id) {{ {fields} }} }}"
    document = watch.format(name="A", fields="status") + watch.format(name="B", fields="version")
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    async with connected(api.url, token(user), protocol) as ws:
        payload = {"query": document, "variables": {"id": project["id"]}}
        await ws.send(json.dumps({"id": "1", "type": kind, "payload": payload}))
        refusal = await asyncio.wait_for(anext(messages(ws)), 5)
        assert refusal["type"] == "error", refusal
        errors = refusal["payload"] if protocol == TRANSPORT_WS else [refusal["payload"]]
        assert [(e["message"], e["extensions"]["code"]) for e in errors] == [
            ("Must provide operation name if query contains multiple operations.", "BAD_USER_INPUT")
        ]
        # Named, the same document runs the named operation.
        await ws.send(
            json.dumps({"id": "2", "type": kind, "payload": payload | {"operationName": "B"}})
        )
        first = await asyncio.wait_for(anext(messages(ws, "2")), 5)
        assert list(first["payload"]["data"]["projectStatus"]) == ["version"]  # B's selection
