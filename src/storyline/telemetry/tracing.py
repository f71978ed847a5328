"""Traces: one per operation, with its SQL and its calls to the video service, and the W3C
trace context carried to the pipeline and back.

- Operations: strawberry's OpenTelemetry extension (``OperationTraces``), a span per
  query or mutation with a child per resolver; a subscription gets one span when it starts
  and none per event.
- SQL: opentelemetry-instrumentation-asyncpg, a client span per statement (its text, never
  its parameters).
- The video service: opentelemetry-instrumentation-aiohttp-client's trace config on the
  client's session only, a client span per call, whose context goes out as ``traceparent``;
  the pipeline sends it back on its updateStatus calls.
- Incoming requests: ``TraceContext`` makes the ``traceparent`` (and ``tracestate``) an
  HTTP request carries the parent of its operation's span, so the pipeline's reports join
  the trace of the generateStory that created the job.

Never recorded: headers (Authorization, so tokens, among them), statements' parameters,
variables, and the arguments outside ``RECORDED_ARGUMENTS`` (the prompt, error messages,
result URLs, idempotency keys, grant reasons). The document is recorded as sent (strawberry's
``query`` attribute): clients send inputs as variables, so it holds no user text unless a
client writes literals into it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Mapping
from enum import Enum
from inspect import isawaitable
from typing import Any

import aiohttp
from graphql import GraphQLResolveInfo, OperationType
from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import SpanKind
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.extensions import SchemaExtension
from strawberry.extensions.tracing import OpenTelemetryExtension

# Arguments (and fields of input arguments) a resolver's span records: ids, enums, numbers.
RECORDED_ARGUMENTS = frozenset(
    {
        "id",
        "projectId",
        "externalId",
        "userId",
        "status",
        "stage",
        "progress",
        "quality",
        "aspectRatio",
        "imageModel",
        "amount",
        "first",
        "after",
        "since",
    }
)


def exporting(names: list[str]) -> TracerProvider:
    """A provider exporting to each named exporter (``otlp``, ``console``), in batches.

    The SDK reads the rest of the standard variables itself: the sampler
    (``OTEL_TRACES_SAMPLER``), the resource (``OTEL_SERVICE_NAME``, default ``storyline``;
    ``OTEL_RESOURCE_ATTRIBUTES``), the batches (``OTEL_BSP_*``) and OTLP's endpoint,
    headers, timeout and compression (``OTEL_EXPORTER_OTLP_*``)."""
    provider = TracerProvider(resource=_resource())
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    return provider


def _resource() -> Resource:
    detected = Resource.create()
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        return detected.merge(Resource({SERVICE_NAME: "storyline"}))
    return detected


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def recorded_arguments(arguments: dict[str, Any], info: GraphQLResolveInfo[Any]) -> dict[str, Any]:
    """What of a resolver's arguments its span records: the names of RECORDED_ARGUMENTS, at
    the top or one level down (inside ``input``); enums by their GraphQL names."""
    kept: dict[str, Any] = {}
    for name, value in arguments.items():
        if isinstance(value, Mapping):
            inner = {key: _shown(value[key]) for key in value if key in RECORDED_ARGUMENTS}
            if inner:
                kept[name] = inner
        elif name in RECORDED_ARGUMENTS:
            kept[name] = _shown(value)
    return kept


def _shown(value: object) -> object:
    return value.name if isinstance(value, Enum) else value


class OperationTraces(OpenTelemetryExtension):
    """strawberry's extension, recording only RECORDED_ARGUMENTS, with no span per
    subscription event, an operation's span ended however the operation ends, and a span
    for a subscription that starts on the fan-out path (schema/fanout.py runs only the
    ``on_execute`` hooks there)."""

    def __init__(self, *, tracer_provider: trace.TracerProvider) -> None:
        super().__init__(arg_filter=recorded_arguments, tracer_provider=tracer_provider)
        self.provider = tracer_provider
        self.operation_traced = False

    def on_operation(self) -> Generator[None, None, None]:
        self.operation_traced = True
        hooks = super().on_operation()
        next(hooks)  # the span starts
        try:
            yield
        finally:
            # strawberry's hook ends its span only when the operation ends normally; a
            # subscription ends by its client leaving (a cancellation), and its span with it.
            next(hooks, None)

    def on_execute(self) -> Generator[None, None, None]:
        if not self.operation_traced:
            execution = self.execution_context
            name = execution.operation_name
            tracer = trace.get_tracer("strawberry", tracer_provider=self.provider)
            span = tracer.start_span(
                f"GraphQL Query: {name}" if name else "GraphQL Query",  # as strawberry names it
                kind=SpanKind.SERVER,
                attributes={"component": "graphql", "graphql.operation.type": "subscription"},
            )
            if execution.query:
                span.set_attribute("query", execution.query)
            span.end()
        yield

    async def resolve(
        self,
        _next: Callable[..., Any],
        root: Any,
        info: GraphQLResolveInfo[Any],
        *args: str,
        **kwargs: Any,
    ) -> Any:
        if info.operation.operation is OperationType.SUBSCRIPTION:
            result = _next(root, info, *args, **kwargs)
            return await result if isawaitable(result) else result
        return await super().resolve(_next, root, info, *args, **kwargs)


class TraceContext:
    """ASGI middleware: an HTTP request's W3C trace context (``traceparent``,
    ``tracestate``, per ``OTEL_PROPAGATORS``) is the current context while it is served."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]  # lower-cased names, as ASGI gives them
        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
        token = context.attach(propagate.extract(carrier))
        try:
            await self.app(scope, receive, send)
        finally:
            context.detach(token)


class Tracing:
    """What one app traces with: its provider's tracers for the schema extension and the
    video service's session, and asyncpg's instrumentation (process-wide: the first app to
    start installs it, and removes it when it stops)."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.instrumented = False

    def extension(self) -> Callable[[], SchemaExtension]:
        """The schema extension's factory (a fresh extension per operation)."""
        return functools.partial(OperationTraces, tracer_provider=self.provider)

    def trace_configs(self) -> list[aiohttp.TraceConfig]:
        """For the video service's session: a span per call, its context sent along. No
        header is recorded (the Authorization header carries the upstream token)."""
        return [create_trace_config(tracer_provider=self.provider)]

    def middleware(self) -> Middleware:
        """The outermost HTTP middleware: the caller's trace context, taken up."""
        return Middleware(TraceContext)

    def start(self) -> None:
        instrumentor = _asyncpg()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=self.provider)
            self.instrumented = True

    def close(self) -> None:
        """Remove what start installed; export what is left."""
        if self.instrumented:
            _asyncpg().uninstrument()
            self.instrumented = False
        self.provider.shutdown()


def _asyncpg() -> Any:
    """asyncpg's instrumentor (one per process), recording statements without parameters."""
    return AsyncPGInstrumentor(capture_parameters=False)  # type: ignore[no-untyped-call]
