"""The projectStatus fan-out path: each event serialised once per distinct selection.

strawberry executes a subscription's selection set for every watcher and every event;
with a thousand watchers of one project that is a thousand identical executions and JSON
encodings per change. For the documents editors actually send (``projectStatus`` with
plain fields, validated against the schema once per query text), this handler renders an
event's payload once per selection and sends the same text to every watcher that asked
for it. Any other document takes strawberry's ordinary path, unchanged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    StringValueNode,
    VariableNode,
    parse,
    validate,
)
from starlette.types import Message
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import Operation
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    NextMessage,
    SubscribeMessage,
)

from storyline.domain.errors import StorylineError
from storyline.live.events import ProjectEvent
from storyline.resolvers.subscriptions import watch_project
from storyline.schema.context import Context
from storyline.schema.errors import MASKED_MESSAGE
from storyline.schema.subprotocols import TransportWS

log = logging.getLogger(__name__)

FIELD = "projectStatus"
# How each field of ProjectStatusEvent reads off an event, as strawberry would serialise it.
VALUES: dict[str, Callable[[ProjectEvent], object]] = {
    "projectId": lambda e: e.project_id,
    "status": lambda e: e.status.value,
    "version": lambda e: e.version,
    "progress": lambda e: e.progress,
    "stage": lambda e: e.stage,
    "errorMessage": lambda e: e.error_message,
    "resultUrl": lambda e: e.result_url,
    "updatedAt": lambda e: e.updated_at.isoformat(),
    "__typename": lambda e: "ProjectStatusEvent",
}
MAX_QUERY_LENGTH = 2000
# The scope key under which the app keeps the server's own send for a WebSocket.
RAW_SEND = "storyline.send"


@dataclass(frozen=True, slots=True)
class Plan:
    """A projectStatus subscription this module can serve: where the id comes from, and
    which fields (response key, field name) to render."""

    key: str
    response_key: str
    project_id: str | None  # a literal id, or None when it comes from ``variable``
    variable: str | None
    fields: tuple[tuple[str, str], ...]
    location: dict[str, int]

    def render(self, event: ProjectEvent) -> str:
        """The ``payload`` of a next message for this event; once per event and selection."""
        cached = event.rendered.get(self.key)
        if cached is None:
            selected = {key: VALUES[name](event) for key, name in self.fields}
            cached = json.dumps({"data": {self.response_key: selected}}, separators=(",", ":"))
            event.rendered[self.key] = cached
        return cached


def compile_plan(schema: GraphQLSchema, query: str, operation_name: str | None) -> Plan | None:
    """A plan for a document that asks for nothing but projectStatus's plain fields."""
    return _compile(schema, query, operation_name) if len(query) <= MAX_QUERY_LENGTH else None


@lru_cache(maxsize=256)
def _compile(schema: GraphQLSchema, query: str, operation_name: str | None) -> Plan | None:
    try:
        document = parse(query)
    except GraphQLError:
        return None
    if validate(schema, document):
        return None  # strawberry reports the errors, as usual
    operation = _single_operation(document, operation_name)
    if operation is None or operation.operation is not OperationType.SUBSCRIPTION:
        return None
    [root] = operation.selection_set.selections
    if not isinstance(root, FieldNode) or root.name.value != FIELD or root.directives:
        return None
    arguments = root.arguments or ()
    if len(arguments) != 1:
        return None
    [argument] = arguments
    fields: list[tuple[str, str]] = []
    for selection in root.selection_set.selections if root.selection_set else ():
        if not isinstance(selection, FieldNode) or selection.directives:
            return None  # fragments and directives take the ordinary path
        name = selection.name.value
        fields.append((selection.alias.value if selection.alias else name, name))
    value = argument.value
    literal = value.value if isinstance(value, StringValueNode) else None
    variable = value.name.value if isinstance(value, VariableNode) else None
    if literal is None and variable is None:
        return None
    location = root.loc.source.get_location(root.loc.start) if root.loc else None
    return Plan(
        key=repr(fields),
        response_key=root.alias.value if root.alias else FIELD,
        project_id=literal,
        variable=variable,
        fields=tuple(fields),
        location={"line": location.line, "column": location.column} if location else {},
    )


def _single_operation(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != len(document.definitions):
        return None  # fragments: the ordinary path
    if operation_name is None:
        return operations[0] if len(operations) == 1 else None
    named = [o for o in operations if o.name is not None and o.name.value == operation_name]
    return named[0] if len(named) == 1 else None


class FanoutTransportWS(TransportWS):
    """graphql-transport-ws, with projectStatus served by plans."""

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        payload = message["payload"]
        query, name = payload.get("query"), payload.get("operationName")
        plan = None
        if isinstance(query, str) and (name is None or isinstance(name, str)):
            plan = compile_plan(
                self.schema._schema,  # type: ignore[attr-defined]  # the graphql-core schema
                query,
                name,
            )
        variables = payload.get("variables") or {}
        project_id = plan.project_id if plan is not None else None
        if plan is not None and plan.variable is not None:
            given = variables.get(plan.variable) if isinstance(variables, dict) else None
            project_id = given if isinstance(given, str) else None
        if (
            plan is None
            or project_id is None
            or not self.connection_acknowledged
            or message["id"] in self.operations
            or (
                self.max_subscriptions_per_connection is not None
                and len(self.operations) >= self.max_subscriptions_per_connection
            )
        ):
            # Anything unusual, including every protocol error, is strawberry's to answer.
            await super().handle_subscribe(message)
            return
        operation: Operation[Context, None] = Operation(
            self, message["id"], payload["query"], variables, payload.get("operationName")
        )
        operation.task = asyncio.create_task(self._watch(operation, plan, project_id))
        operation.task.add_done_callback(self._task_done)
        self.operations[message["id"]] = operation

    async def _watch(
        self, operation: Operation[Context, None], plan: Plan, project_id: str
    ) -> None:
        services = self.context.services
        prefix = f'{{"id":{json.dumps(operation.id)},"type":"next","payload":'
        send = _sender(self.websocket.ws)  # type: ignore[attr-defined]  # starlette's socket
        try:
            events = watch_project(services, self.context.principal, project_id)
            async with aclosing(events):
                async for event in events:
                    text = f"{prefix}{plan.render(event)}}}"
                    await send({"type": "websocket.send", "text": text})
                    services.metrics.events.inc()
                    del event  # nothing of it is kept while the watcher waits
        except StorylineError as expected:
            await self._fail(operation, plan, expected.message, expected.code, expected.extensions)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error in projectStatus")
            await self._fail(operation, plan, MASKED_MESSAGE, "INTERNAL_SERVER_ERROR", {})
        await operation.send_operation_message({"id": operation.id, "type": "complete"})

    async def _fail(
        self,
        operation: Operation[Context, None],
        plan: Plan,
        message: str,
        code: str,
        extensions: dict[str, Any],
    ) -> None:
        error: dict[str, Any] = {"message": message, "path": [plan.response_key]}
        if plan.location:
            error["locations"] = [plan.location]
        error["extensions"] = {"code": code, **extensions}
        failure = {"id": operation.id, "type": "next", "payload": {"data": None, "errors": [error]}}
        await operation.send_operation_message(cast("NextMessage", failure))


def _sender(socket: Any) -> Callable[[Message], Awaitable[None]]:
    """Where to send on an accepted socket: straight to the server's send when the app kept
    it in the scope (StorylineApp), else starlette's WebSocket.send."""
    raw: Callable[[Message], Awaitable[None]] = socket.scope.get(RAW_SEND) or socket.send
    return raw
