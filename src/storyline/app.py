"""The ASGI application: routes, and a lifespan that owns the engine and the upstream client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType

from storyline import logs, web
from storyline.auth import Role, issue_token
from storyline.compat.starlette import keep_server_send
from storyline.compat.strawberry import (
    GraphQLView,
    HTTPException,
    refused_operation_type,
    sub_response_of,
)
from storyline.config import Settings
from storyline.domain.errors import Unauthenticated
from storyline.graphql_http import GRAPHQL_RESPONSE_JSON, JSON, negotiate, not_executed
from storyline.jobs.sweeper import run_sweeper
from storyline.limits import BodySizeLimit
from storyline.live.hub import ProjectBroadcast
from storyline.logs import RequestIds
from storyline.metrics import Metrics
from storyline.persistence.database import Database
from storyline.persistence.listener import PostgresListener
from storyline.schema.context import Context
from storyline.schema.errors import for_client
from storyline.schema.fanout import FanoutTransportWS
from storyline.schema.roots import build_schema
from storyline.schema.subprotocols import LegacyWS
from storyline.services import Background, Services
from storyline.upstream.client import VideoService
from storyline.upstream.simulator import Simulator

log = logging.getLogger(__name__)

GRAPHQL_PATH = "/graphql"
SIMULATOR_PATH = "/simulator"
SUBSCRIPTIONS_NEED_A_WEBSOCKET = (
    "Subscriptions are served over a WebSocket: connect to /graphql with the"
    " graphql-transport-ws (or graphql-ws) subprotocol."
)
KEEP_ALIVE_SECONDS = 15.0


class GraphQLApp(GraphQLView[Context, None]):
    """strawberry's ASGI view, with GraphQL-over-HTTP content negotiation (see graphql_http),
    projectStatus fan-out rendered once per selection (see schema/fanout) and each
    WebSocket subprotocol's rules enforced on clients (see schema/subprotocols)."""

    graphql_transport_ws_handler_class = FanoutTransportWS
    graphql_ws_handler_class = LegacyWS

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        services: Services = request.app.state.services
        if isinstance(response, Response):
            response.media_type = negotiate(request.headers.get("accept"))
        return Context(
            services=services,
            authorization=request.headers.get("authorization"),
            websocket=isinstance(request, WebSocket),
        )

    async def run(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().run(request, *args, **kwargs)
        except HTTPException as refused:
            if isinstance(request, WebSocket):
                raise
            # strawberry answers its refusals (unreadable JSON, wrong method or operation
            # type, no query) in plain text; clients read GraphQL errors with a code.
            error = {"message": refused.reason, "extensions": {"code": "BAD_USER_INPUT"}}
            media_type = negotiate(request.headers.get("accept"))
            return JSONResponse(
                {"errors": [error]},
                status_code=refused.status_code,
                media_type=f"{media_type}; charset=utf-8",
            )

    def decode_json(self, data: str | bytes) -> object:
        try:
            return super().decode_json(data)
        except RecursionError:
            # Nested deeper than the decoder can go: as unreadable as malformed JSON, and
            # refused the same way (HTTP: 400; WebSocket: closed with 4400).
            raise json.JSONDecodeError("JSON nested too deeply", "", 0) from None

    async def execute_operation(self, *args: Any, **kwargs: Any) -> Any:
        try:
            result = await super().execute_operation(*args, **kwargs)
        except HTTPException as refused:
            wrong_type = refused_operation_type(refused)
            if wrong_type is None:
                raise
            if wrong_type.operation_type is OperationType.SUBSCRIPTION:
                raise HTTPException(400, SUBSCRIPTIONS_NEED_A_WEBSOCKET) from None
            # A mutation over GET: the method is wrong, not the request.
            raise HTTPException(405, refused.reason) from None
        response = sub_response_of(kwargs)
        if response.media_type == GRAPHQL_RESPONSE_JSON and not_executed(result):
            response.status_code = 400
        return result

    async def process_result(self, request: Request, result: ExecutionResult) -> Any:
        if result.errors:
            # An error strawberry makes into a result outside the operation's extensions
            # never met ClientErrors: it gets its code here; mapping twice changes nothing.
            result.errors = [for_client(error) for error in result.errors]
        processed = await super().process_result(request, result)
        if not_executed(result):
            processed.pop("data", None)  # nothing ran: the response has no data entry
        return processed

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        response = super().create_response(response_data, sub_response)
        media_type = sub_response.media_type or JSON
        response.headers["content-type"] = f"{media_type}; charset=utf-8"
        return response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            # A client that left mid-request (or was closed for sending too slowly; see
            # storyline.server) has no one to answer: not an error of ours.
            with contextlib.suppress(ClientDisconnect):
                await super().__call__(scope, receive, send)
            return
        services: Services = scope["app"].state.services
        with services.metrics.websocket():
            await super().__call__(scope, receive, send)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Refuse a connection_init without a valid token before serving anything.

        The handlers of schema/subprotocols refuse first, with the reason in the close
        frame; this is the last guard, should a connection_init reach it unauthenticated."""
        try:
            context.principal  # noqa: B018 - authenticates
        except Unauthenticated as refused:
            raise ConnectionRejectionError({"message": refused.message}) from None
        acknowledged: UnsetType = UNSET  # acknowledge without a payload
        return acknowledged


def create_app(settings: Settings, *, database_url: str, self_url: str) -> Starlette:
    """``self_url`` is where this instance is reachable; the built-in simulator reports there."""
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
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        database = Database.open(
            database_url,
            pool_size=settings.db_pool_size,
            transaction_pooler=settings.database_pooler == "transaction",
        )
        video = VideoService(
            settings.upstream_url or f"{self_url}{SIMULATOR_PATH}",
            token=upstream_token,
            timeout=settings.upstream_timeout,
        )
        broadcast = ProjectBroadcast(PostgresListener(settings.session_database_url(database_url)))
        background = Background()
        metrics.follow(
            subscriptions=lambda: broadcast.subscriber_count,
            reconnects=lambda: broadcast.listener.reconnects,
        )
        try:
            await _wait_for_database(database)
            await broadcast.connect()
            app.state.services = Services(
                settings=settings,
                database=database,
                video=video,
                jwt_secret=jwt_secret,
                broadcast=broadcast,
                metrics=metrics,
                background=background,
            )
            sweeper = asyncio.create_task(
                run_sweeper(app.state.services, interval=settings.sweep_interval),
                name="storyline-sweeper",
            )
            try:
                yield
            finally:
                # Paid jobs being created get their upstream answer recorded before we go.
                await background.drain(settings.upstream_timeout + 5)
                sweeper.cancel()
                await asyncio.gather(sweeper, return_exceptions=True)
        finally:
            await broadcast.disconnect()
            if simulator is not None:
                await simulator.aclose()
            await video.aclose()
            await database.dispose()

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        services: Services = request.app.state.services
        listener = "connected" if services.broadcast.listener.connected else "disconnected"
        try:
            async with asyncio.timeout(2):
                await services.database.ping()
            database = "ok"
        except (OSError, DBAPIError, TimeoutError):
            database = "unreachable"
        ready = database == "ok" and listener == "connected"
        return JSONResponse(
            {"database": database, "listener": listener}, status_code=200 if ready else 503
        )

    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    graphql = GraphQLApp(
        build_schema(settings),
        graphql_ide="graphiql" if settings.graphiql else None,
        keep_alive=True,
        keep_alive_interval=KEEP_ALIVE_SECONDS,
        connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout),
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
    )
    routes = [
        Route(GRAPHQL_PATH, graphql, methods=["GET", "POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", prometheus),
        *web.routes,
    ]
    if simulator is not None:
        routes.append(Mount(SIMULATOR_PATH, app=simulator.app))
    middleware = [
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
    return StorylineApp(graphql, routes=routes, middleware=middleware, lifespan=lifespan)


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


async def _wait_for_database(database: Database, *, attempts: int = 30) -> None:
    for attempt in range(attempts):
        try:
            await database.ping()
            return
        except (OSError, OperationalError, DBAPIError):
            if attempt == attempts - 1:
                raise
            log.warning("database not reachable yet; retrying")
            await asyncio.sleep(1)
