"""Pins what storyline.compat.strawberry relies on in strawberry's ASGI view and its
WebSocket handlers: the hooks GraphQLApp, TransportWS, FanoutTransportWS and LegacyWS
override or call.

A new strawberry release is admitted (pyproject.toml's bound) once these pass against it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any, cast

import httpx
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.subscriptions.protocols.graphql_ws.types import StartMessage
from strawberry.types.graphql import OperationType

from storyline.compat.strawberry import (
    GraphQLView,
    HTTPException,
    LegacyWSHandler,
    SubscribeOperation,
    TransportWSHandler,
    refused_operation_type,
    sub_response_of,
)
from tests.compat.asgi import Socket
from tests.compat.samples import SCHEMA


class RecordingView(GraphQLView[None, None]):
    """Records what strawberry's view raises and passes to its hooks."""

    def __init__(self) -> None:
        super().__init__(SCHEMA)
        self.refused: list[HTTPException] = []
        self.arguments: list[dict[str, Any]] = []
        self.responses: list[Response] = []

    def decode_json(self, data: str | bytes) -> object:
        if data == b'"deep"':
            raise json.JSONDecodeError("too deep", "", 0)
        return super().decode_json(data)

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        self.responses.append(sub_response)
        return super().create_response(response_data, sub_response)

    async def run(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().run(request, *args, **kwargs)
        except HTTPException as refused:
            self.refused.append(refused)
            raise

    async def execute_operation(self, *args: Any, **kwargs: Any) -> Any:
        self.arguments.append(kwargs)
        return await super().execute_operation(*args, **kwargs)


async def test_the_view_raises_its_refusals_from_their_cause() -> None:
    view = RecordingView()
    transport = httpx.ASGITransport(app=view)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answered = await client.get("/graphql", params={"query": "mutation { poke }"})
        unreadable = await client.post(
            "/graphql", content=b"{", headers={"content-type": "application/json"}
        )
        too_deep = await client.post(
            "/graphql", content=b'"deep"', headers={"content-type": "application/json"}
        )
        answered_query = await client.post("/graphql", json={"query": "{ hello }"})
    assert (answered.status_code, unreadable.status_code, too_deep.status_code) == (400,) * 3
    wrong_type, bad_json, deep_json = view.refused
    assert (deep_json.status_code, deep_json.reason) == (bad_json.status_code, bad_json.reason)
    cause = refused_operation_type(wrong_type)
    assert cause is not None
    assert cause.operation_type is OperationType.MUTATION
    assert (bad_json.status_code, bad_json.reason) == (400, "Unable to parse request body as JSON")
    assert refused_operation_type(bad_json) is None
    assert answered_query.json() == {"data": {"hello": "world"}}
    # Unreadable bodies never reach execute_operation.
    wrong_type_arguments, query_arguments = view.arguments
    assert sub_response_of(query_arguments) is view.responses[0]
    assert isinstance(sub_response_of(wrong_type_arguments), Response)


SEEN: list[object] = []


class TransportRecording(TransportWSHandler[None, None]):
    async def handle_message(self, message: Any) -> None:
        SEEN.append(message["type"])
        await super().handle_message(message)

    async def run_operation(self, operation: SubscribeOperation[None, None]) -> None:
        query, variables, name = operation.query, operation.variables, operation.operation_name
        SEEN.append(("run", operation.id, query, variables, name))
        SEEN.append(isinstance(self.server_websocket(), WebSocket))
        await operation.send_operation_message({"id": operation.id, "type": "complete"})


class LegacyRecording(LegacyWSHandler[None, None]):
    async def handle(self) -> None:
        await super().handle()
        SEEN.append("handled")

    async def handle_message(self, message: Any) -> None:
        SEEN.append(message["type"])
        await super().handle_message(message)

    async def handle_connection_init(self, message: Any) -> None:
        SEEN.append(self.view.connection_init_wait_timeout)
        await self.send_message({"type": "ka"})
        await super().handle_connection_init(message)


class SocketView(GraphQL[None, None]):
    graphql_transport_ws_handler_class = TransportRecording
    graphql_ws_handler_class = LegacyRecording


def view() -> SocketView:
    SEEN.clear()
    return SocketView(SCHEMA, connection_init_wait_timeout=timedelta(seconds=7))


async def test_each_subscribe_runs_run_operation_and_complete_frees_the_id() -> None:
    payload = {"query": "subscription { count(upto: 1) }", "variables": {"upto": 1}}
    ws = Socket(view(), "/graphql", ["graphql-transport-ws"])
    await ws.connect()
    ws.send_json({"type": "connection_init"})
    assert await ws.receive_json() == {"type": "connection_ack"}
    for _ in range(2):  # the same id again: the complete forgot it
        ws.send_json({"type": "subscribe", "id": "1", "payload": payload})
        assert await ws.receive_json() == {"id": "1", "type": "complete"}
    ws.send_json({"type": "nonsense"})
    closed = await ws.closed()
    assert (closed["code"], closed["reason"]) == (4400, "Unknown message type: nonsense")
    run = ("run", "1", payload["query"], {"upto": 1}, None)
    assert ["connection_init", "subscribe", run, True, "subscribe", run, True, "nonsense"] == SEEN


async def test_the_legacy_handler_serves_the_socket_through_its_hooks() -> None:
    ws = Socket(view(), "/graphql", ["graphql-ws"])
    await ws.connect()
    ws.send_json({"type": "connection_init", "payload": {}})
    assert await ws.receive_json() == {"type": "ka"}
    assert await ws.receive_json() == {"type": "connection_ack"}
    ws.send_json({"type": "connection_terminate"})
    await ws.closed()
    assert ["connection_init", timedelta(seconds=7), "connection_terminate", "handled"] == SEEN


INITS: list[tuple[object, bool]] = []
HANDLERS: list[InitRecording] = []


class InitRecording(TransportWSHandler[None, None]):
    """Refuses a connection_init whose payload says so, as TransportWS refuses a bad token."""

    async def handle_connection_init(self, message: Any) -> None:
        INITS.append((message.get("payload"), self.connection_init_received))
        HANDLERS.append(self)
        if message.get("payload") == {"refuse": True}:
            self.connection_init_received = True
            await self.websocket.close(code=4403, reason="Forbidden: why")
            return
        await super().handle_connection_init(message)


class InitView(GraphQL[None, None]):
    graphql_transport_ws_handler_class = InitRecording


def init_socket() -> Socket:
    INITS.clear()
    HANDLERS.clear()
    view = InitView(SCHEMA, connection_init_wait_timeout=timedelta(seconds=0.2))
    return Socket(view, "/graphql", ["graphql-transport-ws"])


async def test_the_transport_handler_s_connection_init_flag_and_close() -> None:
    ws = init_socket()
    await ws.connect()
    ws.send_json({"type": "connection_init", "payload": {"a": 1}})
    assert await ws.receive_json() == {"type": "connection_ack"}
    ws.send_json({"type": "connection_init", "payload": {}})
    closed = await ws.closed()
    assert (closed["code"], closed["reason"]) == (4429, "Too many initialisation requests")
    assert INITS == [({"a": 1}, False), ({}, True)]

    refused = init_socket()
    await refused.connect()
    refused.send_json({"type": "connection_init", "payload": {"refuse": True}})
    await asyncio.sleep(0.5)  # past the init timeout, which finds connection_init_received set
    closed = await refused.closed()
    assert (closed["code"], closed["reason"]) == (4403, "Forbidden: why")
    [handler] = HANDLERS
    assert handler.connection_timed_out is False


HELLO = "{ hello }"


def by_name(request: dict[str, Any]) -> dict[str, Any]:
    """A request naming its document "hello" in documentId: the document's text instead."""
    if request.get("documentId") == "hello":
        return {**request, "query": HELLO}
    return request


class NamingView(GraphQLView[None, None]):
    """Resolves a documentId where GraphQLApp does: the decoded body and GET parameters."""

    def __init__(self) -> None:
        super().__init__(SCHEMA)

    def parse_json(self, data: str | bytes) -> Any:
        return by_name(super().parse_json(data))

    def parse_query_params(self, params: Any) -> dict[str, Any]:
        return by_name(dict(params))

    def should_render_graphql_ide(self, request: Any) -> bool:
        named = request.query_params.get("documentId") is not None
        return not named and super().should_render_graphql_ide(request)


async def test_the_view_reads_requests_from_parse_json_and_parse_query_params() -> None:
    transport = httpx.ASGITransport(app=NamingView())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        posted = await client.post("/graphql", json={"documentId": "hello"})
        got = await client.get("/graphql", params={"documentId": "hello"})
        ide = await client.get("/graphql", headers={"accept": "text/html"})
    assert posted.json() == got.json() == {"data": {"hello": "world"}}
    assert "<html" in ide.text.lower()


STARTS: list[object] = []


class NamingTransport(TransportWSHandler[None, None]):
    async def handle_subscribe(self, message: Any) -> None:
        STARTS.append((self.connection_acknowledged, message["id"] in self.operations))
        named = {**message, "payload": by_name(message["payload"])}
        await super().handle_subscribe(cast("SubscribeMessage", named))


class NamingLegacy(LegacyWSHandler[None, None]):
    async def handle_start(self, message: Any) -> None:
        STARTS.append(self.connection_acknowledged)
        await self.cleanup_operation(message["id"])  # none yet: nothing happens
        named = {**message, "payload": by_name(message["payload"])}
        await super().handle_start(cast("StartMessage", named))


class NamingSocketView(GraphQL[None, None]):
    graphql_transport_ws_handler_class = NamingTransport
    graphql_ws_handler_class = NamingLegacy


async def test_a_subscribe_or_start_runs_the_payload_the_handler_is_given() -> None:
    STARTS.clear()
    subscription = "subscription { count(upto: 1) }"
    for protocol, kind in (("graphql-transport-ws", "subscribe"), ("graphql-ws", "start")):
        ws = Socket(NamingSocketView(SCHEMA), "/graphql", [protocol])
        await ws.connect()
        ws.send_json({"type": "connection_init", "payload": {}})
        assert (await ws.receive_json())["type"] == "connection_ack"
        ws.send_json({"id": "1", "type": kind, "payload": {"query": subscription}})
        first = await ws.receive_json()
        assert first["payload"] == {"data": {"count": 0}}, first
        assert (await ws.receive_json())["type"] == "complete"
        ws.send_json({"id": "2", "type": kind, "payload": {"documentId": "hello"}})
        answer = await ws.receive_json()
        if protocol == "graphql-transport-ws":  # a query runs there (legacy: subscriptions)
            assert answer["payload"] == {"data": {"hello": "world"}}, answer
    assert STARTS == [(True, False), (True, False), True, True]


async def test_the_init_wait_is_a_timer_from_acceptance_to_the_socket_s_end() -> None:
    # strawberry calls on_request_accepted once the socket is accepted and shutdown at its
    # end; it closes with 4408 by the task in connection_init_timeout_task, which shutdown
    # awaits. TransportWSHandler replaces its task with a timer that makes one only then.
    silent = init_socket()
    await silent.connect()
    closed = await silent.closed()  # no connection_init within 0.2 s
    assert (closed["code"], closed["reason"]) == (4408, "Connection initialisation timeout")

    ws = init_socket()
    await ws.connect()
    ws.send_json({"type": "connection_init", "payload": {}})
    assert await ws.receive_json() == {"type": "connection_ack"}
    [handler] = HANDLERS
    assert handler.connection_init_timeout_task is None  # no task kept
    tasks = len(asyncio.all_tasks())
    await asyncio.sleep(0.4)  # past the wait: nothing is closed, and no task was started
    assert len(asyncio.all_tasks()) == tasks
    ws.send_json({"type": "ping"})
    assert await ws.receive_json() == {"type": "pong"}
    assert handler.connection_timed_out is False
