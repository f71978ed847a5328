"""strawberry-graphql's internals that Storyline builds on, each behind one name.

Checked against strawberry-graphql 0.341.2 (with cross-web 0.9.0, which its HTTP views
raise their refusals with); tests/compat/test_strawberry.py pins each behaviour below.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Mapping
from contextlib import suppress
from typing import Any, TypeVar, cast

import strawberry
from cross_web import HTTPException
from graphql import (
    ASTValidationRule,
    DocumentNode,
    Executor,
    GraphQLError,
    GraphQLField,
    GraphQLSchema,
)
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.schema.schema import (
    DEFAULT_ALLOWED_OPERATION_TYPES,
    StrawberryGraphQLCoreExecutionContext,
)
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

__all__ = [
    "VALIDATION_RULES",
    "GraphQLView",
    "HTTPException",
    "LegacyWSHandler",
    "StrawberryExecutionContext",
    "SubscribeOperation",
    "TransportWSHandler",
    "build_executor",
    "graphql_schema",
    "operation_types_allowed",
    "provided_operation_name",
    "refused_operation_type",
    "run_execute_hooks",
    "sub_response_of",
]

ContextT = TypeVar("ContextT")
RootValueT = TypeVar("RootValueT")

# The graphql-core executor class strawberry executes with unless told otherwise; a subclass
# keeps what strawberry adds to it (resolvers' info, operation extensions).
StrawberryExecutionContext = StrawberryGraphQLCoreExecutionContext

# The rules strawberry's own validation adds to those it is given (validate_document):
# a validation done in its stead applies them too.
VALIDATION_RULES: tuple[type[ASTValidationRule], ...] = (
    MaybeNullValidationRule,
    OneOfInputValidationRule,
)

# One operation of a graphql-transport-ws socket, as handle_subscribe creates it: ``id``,
# ``query``, ``variables``, ``operation_name``, and ``send_operation_message``, after
# which a ``complete`` or ``error`` message frees the id for reuse.
SubscribeOperation = Operation


def graphql_schema(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema strawberry built and executes against (``schema._schema``)."""
    return schema._schema


def reads_an_attribute(field: GraphQLField) -> bool:
    """Whether strawberry resolves ``field`` by reading it off its source, ignoring the info
    and arguments it is called with: a field with no resolver, extensions (permission
    classes among them) or exception handlers of its own, which strawberry resolves with
    GraphQLCoreConverter.from_resolver's ``_get_basic_result``. (It marks other resolvers
    ``_is_default`` too: any without a resolver of the field's own.)"""
    resolve = field.resolve
    return getattr(resolve, "__name__", None) == "_get_basic_result" and (
        getattr(resolve, "_is_default", False) is True
    )


def yields_the_event(field: GraphQLField) -> bool:
    """Whether ``field`` is a strawberry subscription field, whose resolve hands each event
    on as the field's value (GraphQLCoreConverter.from_field)."""
    definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
    return isinstance(definition, strawberry.types.field.StrawberryField) and (
        definition.is_subscription
    )


def provided_operation_name(context: ExecutionContext) -> str | None:
    """The operationName the request gave, None if it gave none.

    ExecutionContext keeps it only privately (``_provided_operation_name``): its public
    ``operation_name`` falls back to the document's first operation."""
    return context._provided_operation_name


def operation_types_allowed(given: Iterable[OperationType] | None) -> set[OperationType]:
    """The operation types Schema.execute allows: ``given``, or when none (or no types) are
    given, its default (DEFAULT_ALLOWED_OPERATION_TYPES: all three)."""
    return set(given or DEFAULT_ALLOWED_OPERATION_TYPES)


def build_executor(
    schema: strawberry.Schema,
    document: DocumentNode,
    root_value: object,
    variables: dict[str, Any] | None,
    operation_name: str | None,
) -> Executor[Any] | list[GraphQLError]:
    """graphql-core's executor for a validated document, of the class the schema executes
    with (``execution_context_class``), without a context value; the variables' coercion
    errors if they do not coerce (graphql-core's Executor.build)."""
    return schema.execution_context_class.build(
        schema._schema, document, root_value, None, variables, operation_name
    )


def run_execute_hooks(
    schema: strawberry.Schema,
    *,
    query: str,
    document: DocumentNode,
    context: object,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    allowed: Iterable[OperationType],
) -> None:
    """Enter and leave the schema extensions' execution hooks (``on_execute``) for an
    operation executed elsewhere, with the execution context strawberry would give them.

    Does what Schema.execute and Schema.subscribe do: fresh extensions from
    ``get_extensions()``, each given the execution context, run by the runner of
    ``create_extensions_runner``. ExecutionContext takes the request's operation name as
    its init-only ``provided_operation_name``."""
    execution_context = ExecutionContext(
        query=query,
        schema=schema,
        allowed_operations=allowed,
        context=context,
        variables=variables,
        provided_operation_name=operation_name,
        graphql_document=document,
    )
    # The runner passes over an extension without the hook; left out here, it is not
    # even looked at (a subscription storm runs this once per watcher).
    extensions = [
        extension
        for extension in schema.get_extensions()
        if type(extension).on_execute is not SchemaExtension.on_execute
    ]
    for extension in extensions:
        extension.execution_context = execution_context
    with schema.create_extensions_runner(execution_context, extensions).executing():
        pass


def refused_operation_type(refused: HTTPException) -> InvalidOperationTypeError | None:
    """Why strawberry's HTTP view refused a request, when it was the operation's type (a
    mutation over GET, a type the schema does not allow): the view raises its
    HTTPException ``from`` the schema's InvalidOperationTypeError. None otherwise."""
    cause = refused.__cause__
    return cause if isinstance(cause, InvalidOperationTypeError) else None


def sub_response_of(execute_operation_kwargs: Mapping[str, Any]) -> Response:
    """The response under construction, from the arguments strawberry's view passes to
    ``execute_operation`` (by keyword, as ``sub_response``)."""
    return cast("Response", execute_operation_kwargs["sub_response"])


class GraphQLView(GraphQL[ContextT, RootValueT]):
    """strawberry's ASGI view, with what its subclasses rely on beyond the hooks strawberry
    documents (get_context, process_result, decode_json, on_ws_connect, render_graphql_ide):

    - ``run`` raises cross-web's HTTPException for what the view refuses (unreadable JSON,
      a wrong method or operation type, no query), which ``__call__`` answers in plain text;
    - ``execute_operation`` gets the response under construction as the keyword
      ``sub_response`` (sub_response_of), and raises the schema's refusal of an operation
      type as an HTTPException from it (refused_operation_type);
    - ``create_response(response_data, sub_response)`` makes the response sent;
    - a JSONDecodeError raised by ``decode_json`` means unreadable JSON: 400;
    - a POST's JSON body is decoded by ``parse_json(body)`` and a GET's parameters by
      ``parse_query_params(params)``; the request's query, variables, operationName and
      extensions are read from what they return (an HTTPException they raise is a
      refusal, as above); ``should_render_graphql_ide(request)`` decides, before either,
      whether a GET is answered with the IDE (or 404 without one).
    """


class InitWait:
    """The wait for a socket's connection_init, for both subprotocols' handlers: a timer
    that, once ``delay`` seconds pass without ``stop``, runs ``close`` in a task of its
    own; ``end`` (at the socket's end) stops the timer and that task."""

    __slots__ = ("_closing", "_timer")

    def __init__(self, delay: float, close: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._closing: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            delay, self._expire, close
        )

    def _expire(self, close: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._timer = None
        self._closing = asyncio.create_task(close())

    def stop(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    async def end(self) -> None:
        self.stop()
        closing, self._closing = self._closing, None
        if closing is not None:
            closing.cancel()
            with suppress(asyncio.CancelledError):
                await closing


class TransportWSHandler(BaseGraphQLTransportWSHandler[ContextT, RootValueT]):
    """strawberry's graphql-transport-ws handler (the view's
    ``graphql_transport_ws_handler_class``), with what its subclasses rely on:

    - ``handle_message`` is called with each message decoded from the socket;
      ``handle_invalid_message(reason)`` closes the socket with 4400 and the reason;
    - ``handle_subscribe`` (once the connection is acknowledged, the id is new and the
      per-connection limit not reached) creates a SubscribeOperation from the message's
      payload and runs ``run_operation(operation)`` in a task of its own, one per
      subscribe; ``connection_acknowledged`` and ``operations`` (by id) say which;
    - ``run_operation`` ends by sending ``complete`` (or the errors) for the operation;
    - ``handle_connection_init`` is called with each ``connection_init``; it refuses one
      when ``connection_init_received`` is set (4429), and the init timeout closes nothing
      once it is set (``connection_timed_out`` stays False); ``websocket.close(code=,
      reason=)`` closes the socket with that code and reason;
    - the wait for connection_init starts in ``on_request_accepted`` (once the socket is
      accepted), as a task in ``connection_init_timeout_task`` that ``shutdown`` (at the
      socket's end) cancels and awaits; here it is an ``InitWait`` instead, a timer that
      makes a task only when the wait is over, ended in ``shutdown`` before strawberry's.
    """

    _init_wait: InitWait | None = None

    def server_websocket(self) -> WebSocket:
        """starlette's WebSocket under strawberry's ASGI adapter (``websocket.ws``)."""
        return cast("ASGIWebSocketAdapter", self.websocket).ws

    def on_request_accepted(self) -> None:
        # strawberry's starts a task that sleeps through the wait for connection_init
        # (handle_connection_init_timeout), which every socket keeps, with its frame and its
        # future, for the whole wait: a timer is one handle, gone at the init.
        delay = self.connection_init_wait_timeout.total_seconds()
        self._init_wait = InitWait(delay, self._close_timed_out)

    async def _close_timed_out(self) -> None:
        # What strawberry's handle_connection_init_timeout does once its sleep is over.
        if self.connection_init_received:
            return
        self.connection_timed_out = True
        try:
            await self.websocket.close(code=4408, reason="Connection initialisation timeout")
        except Exception as error:  # as strawberry does: logged, not raised
            await self.handle_task_exception(error)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if self._init_wait is not None:
            self._init_wait.stop()
        await super().handle_connection_init(message)

    async def shutdown(self) -> None:
        if self._init_wait is not None:
            await self._init_wait.end()
        await super().shutdown()


class LegacyWSHandler(BaseGraphQLWSHandler[ContextT, RootValueT]):
    """strawberry's graphql-ws handler (the view's ``graphql_ws_handler_class``), with what
    its subclasses rely on: ``handle()`` serves the socket until it closes (its end cancels
    the keep-alive and every operation); ``handle_message`` is called with each decoded
    message, ``handle_connection_init`` with each ``connection_init``, ``handle_start``
    with each ``start`` (which runs its payload's query once ``connection_acknowledged``;
    ``cleanup_operation(id)`` stops an operation); ``send_message`` sends one message;
    ``view`` is the view, with its ``connection_init_wait_timeout``.
    """
