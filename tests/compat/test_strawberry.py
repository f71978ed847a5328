"""Pins what storyline.compat.strawberry relies on in strawberry-graphql (and cross-web).

A new strawberry release is admitted (pyproject.toml's bound) once these pass against it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterator
from datetime import timedelta
from inspect import isawaitable
from typing import Any

import graphql
import httpx
import pytest
import strawberry
from graphql import Executor, GraphQLError, GraphQLSchema, parse, specified_rules, validate
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.extensions import SchemaExtension
from strawberry.schema import schema as strawberry_schema
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from storyline.compat.graphql import weak_async_helpers
from storyline.compat.strawberry import (
    VALIDATION_RULES,
    GraphQLView,
    HTTPException,
    LegacyWSHandler,
    StrawberryExecutionContext,
    SubscribeOperation,
    TransportWSHandler,
    build_executor,
    graphql_schema,
    operation_types_allowed,
    provided_operation_name,
    refused_operation_type,
    run_execute_hooks,
    sub_response_of,
)
from tests.compat.asgi import Socket


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"


@strawberry.type
class Mutation:
    @strawberry.mutation
    def poke(self) -> int:
        return 1


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def count(self, upto: int) -> AsyncGenerator[int, None]:
        for number in range(upto):
            yield number


SCHEMA = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)
TWO = "query A { hello } query B { hello }"


def test_the_graphql_core_schema_is_the_one_strawberry_built() -> None:
    built = graphql_schema(SCHEMA)
    assert isinstance(built, GraphQLSchema)
    assert built.query_type is not None
    assert set(built.query_type.fields) == {"hello"}
    assert built.mutation_type is not None
    assert built.subscription_type is not None
    # strawberry's resolvers are this schema's: graphql-core alone executes with them.
    assert graphql.graphql_sync(built, "{ hello }").data == {"hello": "world"}


def test_the_provided_operation_name_is_kept_apart_from_the_fallback() -> None:
    def context(name: str | None) -> ExecutionContext:
        return ExecutionContext(
            query=TWO,
            schema=SCHEMA,
            allowed_operations=(),
            provided_operation_name=name,
            graphql_document=parse(TWO),
        )

    assert provided_operation_name(context(None)) is None
    assert context(None).operation_name == "A"  # the fallback OperationChoice must not see
    assert provided_operation_name(context("B")) == "B"


async def test_extensions_see_the_request_s_operation_name_and_the_schema_executing() -> None:
    seen: list[tuple[str | None, object]] = []

    class Recording(SchemaExtension):
        def on_validate(self) -> Iterator[None]:
            seen.append(
                (provided_operation_name(self.execution_context), self.execution_context.schema)
            )
            yield

    class Subclass(strawberry.Schema):
        pass

    schema = Subclass(query=Query, extensions=[Recording])
    await schema.execute("{ hello }")
    await schema.execute("query Q { hello }", operation_name="Q")
    assert seen == [(None, schema), ("Q", schema)]  # documents.py reads the guard off it


def test_execute_allows_every_operation_type_when_given_none() -> None:
    assert operation_types_allowed(None) == set(OperationType)
    assert operation_types_allowed([OperationType.QUERY]) == {OperationType.QUERY}


async def test_strawberry_validates_with_graphql_core_s_rules_and_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    used: list[tuple[type[graphql.ASTValidationRule], ...]] = []

    def recording(schema: GraphQLSchema, document: Any, rules: Any) -> list[GraphQLError]:
        used.append(tuple(rules))
        return validate(schema, document, rules)

    monkeypatch.setattr(strawberry_schema, "validate", recording)
    await SCHEMA.execute("{ hello }")
    assert used == [(*specified_rules, *VALIDATION_RULES)]


async def test_an_extension_s_document_and_errors_replace_parsing_and_validation() -> None:
    """What GuardedDocuments does: strawberry neither parses nor validates again."""

    class Guarded(SchemaExtension):
        def on_parse(self) -> Iterator[None]:
            self.execution_context.graphql_document = parse("{ hello nope }")
            yield

        def on_validate(self) -> Iterator[None]:
            self.execution_context.pre_execution_errors = []
            yield

    result = await strawberry.Schema(query=Query, extensions=[Guarded]).execute("not GraphQL")
    assert result.errors is None
    assert result.data == {"hello": "world"}  # the unknown field was never validated


def test_the_default_executor_is_strawberry_s_and_reads_the_helpers_per_field() -> None:
    assert strawberry.Schema(query=Query).execution_context_class is StrawberryExecutionContext
    helpers: list[object] = []

    class Replaced(StrawberryExecutionContext):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            weak_async_helpers(self)
            helpers.append(self.async_helpers)

    @strawberry.type
    class Asking:
        @strawberry.field
        def helpers(self, info: strawberry.Info[None, None]) -> bool:
            return info._raw_info.async_helpers is helpers[0]

    schema = strawberry.Schema(query=Asking, execution_context_class=Replaced)
    assert schema.execute_sync("{ helpers }").data == {"helpers": True}


async def test_an_executor_is_built_of_the_schema_s_class_without_a_context() -> None:
    document = parse("subscription S($upto: Int!) { count(upto: $upto) }")
    built = build_executor(SCHEMA, document, 7, {"upto": 3}, "S")
    assert isinstance(built, SCHEMA.execution_context_class)
    assert isinstance(built, Executor)
    assert built.context_value is None
    # strawberry's subscription field resolves each event to the event itself.
    result = graphql.execute_subscription_event(built)
    if isawaitable(result):
        result = await result
    assert result == graphql.ExecutionResult({"count": 7})
    refused = build_executor(SCHEMA, document, None, {"upto": "x"}, "S")
    assert isinstance(refused, list)
    assert all(isinstance(error, GraphQLError) for error in refused)


def test_the_execute_hooks_run_once_with_strawberry_s_execution_context() -> None:
    seen: list[tuple[str | None, str | None, object, object]] = []

    class Recording(SchemaExtension):
        def on_execute(self) -> Iterator[None]:
            context = self.execution_context
            seen.append((context.operation_name, context.query, context.context, context.variables))
            yield

    schema = strawberry.Schema(query=Query, subscription=Subscription, extensions=[Recording])
    query = "subscription S { count(upto: 1) }"
    run_execute_hooks(
        schema,
        query=query,
        document=parse(query),
        context="ctx",
        variables={"v": 1},
        operation_name="S",
        allowed=(OperationType.SUBSCRIPTION,),
    )
    assert seen == [("S", query, "ctx", {"v": 1})]


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
