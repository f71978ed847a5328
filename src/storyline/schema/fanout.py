"""The live fan-out path: each event rendered once per distinct selection.

strawberry executes a subscription's selection set for every watcher and every event;
with a thousand watchers of one project that is a thousand identical executions and JSON
encodings per change. This handler serves ``projectStatus`` and ``accountChanges``
subscriptions itself (``LIVE``): the
document is checked by the schema's DocumentGuard, as on the ordinary path, each event is
rendered once per distinct (document, operation, variables), by the selection's plan
(schema/plans.py) or else by graphql-core's execution against that document, and the same
text goes to every watcher that asked for it. Anything else, including every document
that is not valid, takes strawberry's ordinary path. tests/test_fanout_equivalence.py
holds both paths equal, tests/test_plans.py a plan and the execution it stands for.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any, cast
from weakref import WeakValueDictionary

import strawberry
from graphql import (
    ArgumentNode,
    DocumentNode,
    ExecutionResult,
    Executor,
    FieldNode,
    GraphQLError,
    OperationType,
    VariableNode,
    Visitor,
    execute_subscription_event,
    get_argument_values,
    get_operation_ast,
    get_variable_values,
    visit,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import NextMessage
from strawberry.types.graphql import OperationType as StrawberryOperationType

from storyline.auth import Principal
from storyline.compat.graphql import per_event_executor
from storyline.compat.starlette import server_send
from storyline.compat.strawberry import (
    SubscribeOperation,
    build_executor,
    graphql_schema,
    run_execute_hooks,
)
from storyline.live.events import AccountEvent
from storyline.schema.context import Context
from storyline.schema.errors import for_client
from storyline.schema.plans import Plan, plan
from storyline.schema.roots import StorylineSchema
from storyline.schema.subprotocols import TransportWS
from storyline.schema.types import ProjectStatusEvent, account_change
from storyline.services import Services
from storyline.usecases.account_changes import watch_account
from storyline.usecases.subscriptions import watch_project

SUBSCRIPTION = (StrawberryOperationType.SUBSCRIPTION,)
Event = AccountEvent  # a ProjectEvent or a BalanceEvent


@dataclass(frozen=True, slots=True)
class LiveField:
    """A subscription field this path serves: its events, and each as its resolver in
    schema/roots.py yields it (so both paths execute the same value)."""

    watch: Callable[[Services, Principal, dict[str, Any]], AsyncGenerator[Event, None]]
    shown: Callable[[Any], object]


LIVE = {
    "projectStatus": LiveField(
        lambda services, principal, arguments: watch_project(
            services, principal, str(arguments["projectId"])
        ),
        ProjectStatusEvent.of,
    ),
    "accountChanges": LiveField(
        lambda services, principal, arguments: watch_account(
            services, principal, arguments.get("since")
        ),
        account_change,
    ),
}


def live_field(document: DocumentNode, operation_name: str | None) -> FieldNode | None:
    """The root field of a subscription to one of ``LIVE``, written as a plain field (no
    directive, not behind a fragment); None for any other operation."""
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation is not OperationType.SUBSCRIPTION:
        return None
    [root, *others] = operation.selection_set.selections
    if others or not isinstance(root, FieldNode) or root.name.value not in LIVE:
        return None
    return None if root.directives else root


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Shape:
    """The variables of a document's operation that shape its payloads (see ``selection``):
    found once per document and operation, not once per watcher, for as long as a
    selection of it is watched."""

    variables: frozenset[str]


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Selection:
    """A document's operation with its variables: all that shapes a payload. Watchers that
    ask the same share one (see ``selection``), and an event keeps its rendering under it
    for all of them. Its executor, checked and coerced once when the first of them
    subscribed, is copied for each event (graphql-core's per-event executor)."""

    query: str  # the document's text, which every watcher's operation then shares
    document: DocumentNode
    executor: Executor[Any]  # built without a root value or any watcher's context
    field: LiveField
    shape: Shape  # kept for SHAPES while the selection is watched
    plan: Plan | None  # how its payloads are built without the executor, where they can be

    async def render(self, schema: strawberry.Schema, event: Event) -> str:
        """The ``payload`` of a next message for this event; once per event and selection."""
        cached = event.rendered.get(self)
        if cached is None:
            # The event as the field's resolver yields it, built by the selection's plan
            # or else executed as graphql-core executes each event of a subscription.
            shown = self.field.shown(event)
            cached = None if self.plan is None else self.plan.payload(shown)
            if cached is None:
                cached = await self.executed(schema, shown)
            event.rendered[self] = cached
        return cached

    async def executed(self, schema: strawberry.Schema, shown: object) -> str:
        """The payload of graphql-core's execution of an event (``plan``'s must be equal)."""
        result = execute_subscription_event(per_event_executor(self.executor, shown))
        if isawaitable(result):
            result = await result
        return json.dumps(payload(schema, result), separators=(",", ":"))


# The selections being watched, by schema, query text, operation name and the variables
# that shape a payload; and the shapes of their documents, by the first three.
SelectionKey = tuple[object, str, str | None, str]
SELECTIONS: WeakValueDictionary[SelectionKey, Selection] = WeakValueDictionary()
SHAPES: WeakValueDictionary[tuple[object, str, str | None], Shape] = WeakValueDictionary()


def selection_key(
    schema: strawberry.Schema,
    query: str,
    document: DocumentNode,
    root: FieldNode,
    operation_name: str | None,
    variables: dict[str, Any] | None,
) -> tuple[SelectionKey, Shape]:
    """The key of the shared selection for a validated document and its variables in
    SELECTIONS, and the document's shape.

    A variable used only in the root field's arguments (the project id, as editors write
    it) chooses the events, not their payload: it is left out of the key, so the watchers
    of every project with one document share one selection. (The query text names the
    root field, so one key never serves two fields.)"""
    of_document = (schema, query, operation_name)
    shape = SHAPES.get(of_document)
    if shape is None:
        shape = SHAPES[of_document] = Shape(frozenset(_variables_below(document, root)))
    shaping = shape.variables
    given = {name: value for name, value in (variables or {}).items() if name in shaping}
    return (*of_document, json.dumps(given, sort_keys=True) if given else "{}"), shape


def _variables_below(document: DocumentNode, root: FieldNode) -> set[str]:
    """The variables a document uses anywhere but in ``root``'s arguments (and in the
    definitions that declare them)."""
    used: set[str] = set()
    in_root = {id(argument) for argument in root.arguments or ()}

    class Uses(Visitor):
        def enter_argument(self, node: ArgumentNode, *_: object) -> object:
            return Visitor.SKIP if id(node) in in_root else None

        def enter_variable_definition(self, *_: object) -> object:
            return Visitor.SKIP

        def enter_variable(self, node: VariableNode, *_: object) -> None:
            used.add(node.name.value)

    visit(document, Uses())
    return used


def payload(schema: strawberry.Schema, result: ExecutionResult) -> dict[str, Any]:
    """A result as strawberry's handler sends it: errors logged by the schema and mapped
    for the client (what ClientErrors does to each result on the ordinary path)."""
    sent: dict[str, Any] = {"data": result.data}
    if result.errors:
        schema.process_errors(result.errors)
        sent["errors"] = [for_client(error).formatted for error in result.errors]
    return sent


class FanoutTransportWS(TransportWS):
    """graphql-transport-ws, with the ``LIVE`` fields rendered once per event and selection.

    strawberry's handle_subscribe runs first, unchanged (acknowledged connection, unique
    id, per-connection limit); only the operation it starts is decided here.
    """

    async def run_operation(self, operation: SubscribeOperation[Context, None]) -> None:
        # The watch runs in this coroutine itself: a frame awaited from here would be
        # one more frame held by every idle watcher.
        served = self.served(operation)
        if served is None:
            await super().run_operation(operation)
            return
        watched, arguments = served
        services = self.context.services
        prefix = f'{{"id":{json.dumps(operation.id)},"type":"next","payload":'
        send = server_send(self.server_websocket())
        try:
            self.executing(operation, watched.document)
            # What the operation still holds is the selection's: one text for all watchers.
            operation.query, operation.variables = watched.query, None
            events = watched.field.watch(services, self.context.principal, arguments)
            del served, arguments
            async with aclosing(events):
                async for event in events:
                    text = f"{prefix}{await watched.render(self.storyline_schema, event)}}}"
                    await send({"type": "websocket.send", "text": text})
                    services.metrics.events.inc()
                    del event, text  # nothing of it is kept while the watcher waits
        except asyncio.CancelledError:
            raise
        except Exception as failure:
            # An error raised by the event stream, wrapped as strawberry wraps it.
            error = failure if isinstance(failure, GraphQLError) else None
            error = error or GraphQLError(str(failure), original_error=failure)
            result = ExecutionResult(data=None, errors=[error])
            message = {
                "id": operation.id,
                "type": "next",
                "payload": payload(self.storyline_schema, result),
            }
            await operation.send_operation_message(cast("NextMessage", message))
        await operation.send_operation_message({"id": operation.id, "type": "complete"})

    def served(
        self, operation: SubscribeOperation[Context, None]
    ) -> tuple[Selection, dict[str, Any]] | None:
        """The selection and root arguments of a subscription this handler can serve; None
        for anything the ordinary path is to answer."""
        query, name, variables = operation.query, operation.operation_name, operation.variables
        if not (
            isinstance(query, str)
            and (name is None or isinstance(name, str))
            and (variables is None or isinstance(variables, dict))
        ):
            return None
        document = self.checked(query)
        root = None if document is None else live_field(document, name)
        if document is None or root is None:
            return None
        schema = self.storyline_schema
        key, shape = selection_key(schema, query, document, root, name, variables)
        watched = SELECTIONS.get(key)
        # A selection's first watcher builds its executor; the others only have their
        # variables coerced, as building one would (the document's operation and fragments
        # passed then): the executor is 30 µs of a subscription that a storm opens by the
        # thousand.
        if watched is None:
            built = build_executor(schema, document, None, variables, name)
            if isinstance(built, list):
                return None  # variables that do not coerce: strawberry reports them
            field = LIVE[root.name.value]
            # Weakly held: gone again at once should this watcher be refused below.
            watched = SELECTIONS[key] = Selection(query, document, built, field, shape, plan(built))
            coerced = built.variable_values
        else:
            definitions = watched.executor.operation.variable_definitions or ()
            given = get_variable_values(graphql_schema(schema), definitions, variables or {})
            if isinstance(given, list):
                return None
            coerced = given
        subscription = graphql_schema(schema).subscription_type
        assert subscription is not None  # the document validated against it
        try:
            arguments = get_argument_values(subscription.fields[root.name.value], root, coerced)
        except GraphQLError:
            return None
        return watched, arguments

    def checked(self, query: str) -> DocumentNode | None:
        """The document if it passes every check of the ordinary path (the schema's one
        DocumentGuard, with its cache); None lets the ordinary path answer the errors."""
        checked = self.storyline_schema.documents.check(query)
        return checked.document if checked.valid else None

    def executing(
        self, operation: SubscribeOperation[Context, None], document: DocumentNode
    ) -> None:
        """The extensions' execution hooks, as the ordinary path runs them when a
        subscription starts (OperationMetrics names the operation in the logs)."""
        run_execute_hooks(
            self.storyline_schema,
            query=operation.query,
            document=document,
            context=self.context,
            variables=operation.variables,
            operation_name=operation.operation_name,
            allowed=SUBSCRIPTION,
        )

    @property
    def storyline_schema(self) -> StorylineSchema:
        return cast("StorylineSchema", self.schema)
