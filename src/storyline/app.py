"""The ASGI application: its routes and middleware, around the GraphQL view, and the
lifespan that owns what a running instance shares (storyline.lifespan)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from storyline import logs, probes, web
from storyline.auth import Role, issue_token
from storyline.compat.starlette import keep_server_send
from storyline.config import Settings
from storyline.graphql_http import document_id
from storyline.lifespan import lifespan
from storyline.limits import BodySizeLimit
from storyline.logs import RequestIds
from storyline.metrics import Metrics
from storyline.schema.roots import build_schema
from storyline.schema.view import GraphQLApp
from storyline.upstream.simulator import REPORT as SIMULATOR_REPORT
from storyline.upstream.simulator import Simulator

if TYPE_CHECKING:
    from storyline.telemetry.tracing import Tracing

GRAPHQL_PATH = "/graphql"
SIMULATOR_PATH = "/simulator"
KEEP_ALIVE_SECONDS = 15.0


def create_app(
    settings: Settings, *, database_url: str, self_url: str, tracing: Tracing | None = None
) -> Starlette:
    """``self_url`` is where this instance is reachable; the built-in simulator reports there.
    ``tracing``: OpenTelemetry's, when the OTEL_* variables ask for it (storyline.telemetry);
    None installs nothing of it. Raises ManifestError for a trusted-documents manifest the
    server cannot run."""
    # First: a bad manifest stops here, before anything opens.
    schema = build_schema(settings, traces=tracing.extension() if tracing is not None else None)
    trusted = schema.persisted.manifest
    jwt_secret = settings.resolved_jwt_secret()
    upstream_token = settings.resolved_upstream_token()
    metrics = Metrics()
    simulator = None
    if settings.upstream_url is None:
        simulator = Simulator(
            callback_url=f"{self_url}/graphql",
            token=upstream_token,
            pipeline_token=lambda: issue_token(
                jwt_secret, "simulator", role=Role.PIPELINE, ttl=600
            ),
            step_seconds=settings.simulator_step_seconds,
            failure_rate=settings.simulator_failure_rate,
            persisted=trusted is not None,
        )
    editor = web.editor_document()
    own = {"the editor page's": editor}
    if simulator is not None:
        own["the built-in simulator's"] = SIMULATOR_REPORT
    schema.persisted.warn_unless_trusted(own)
    graphql = GraphQLApp(
        schema,
        graphql_ide="graphiql" if settings.graphiql else None,
        keep_alive=True,
        keep_alive_interval=KEEP_ALIVE_SECONDS,
        connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout),
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
    )
    routes = [
        Route(GRAPHQL_PATH, graphql, methods=["GET", "POST"]),
        *probes.routes,
        *web.routes({"query": editor} if trusted is None else {"documentId": document_id(editor)}),
    ]
    if simulator is not None:
        routes.append(Mount(SIMULATOR_PATH, app=simulator.app))
    middleware = [
        *([tracing.middleware()] if tracing is not None else []),
        Middleware(RequestIds),
        Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
                max_age=600,
            )
        )
    owned = lifespan(
        settings,
        database_url=database_url,
        video_url=settings.upstream_url or f"{self_url}{SIMULATOR_PATH}",
        jwt_secret=jwt_secret,
        upstream_token=upstream_token,
        metrics=metrics,
        simulator=simulator,
        tracing=tracing,
    )
    return StorylineApp(graphql, routes=routes, middleware=middleware, lifespan=owned)


class StorylineApp(Starlette):
    """Starlette, with GraphQL WebSockets handed straight to the GraphQL view.

    The HTTP middleware (errors, request ids' headers, body limit, CORS, the exception
    handlers and the router) has nothing to do on a WebSocket once it is routed, yet each
    layer's frame would live as long as the connection, on every one of thousands. The
    server's own ``send`` is kept in the scope: the fan-out path sends through it
    (schema/fanout.py), rather than through Starlette's per-message wrappers.
    """

    def __init__(self, graphql: GraphQLApp, **options: Any) -> None:
        super().__init__(**options)
        self.graphql = graphql

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == GRAPHQL_PATH:
            scope["app"] = self
            keep_server_send(scope, send)
            token = logs.request_id.set(logs.request_id_of(scope))
            try:
                await self.graphql(scope, receive, send)
            finally:
                logs.request_id.reset(token)
            return
        await super().__call__(scope, receive, send)
