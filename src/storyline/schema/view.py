"""strawberry's ASGI view of the schema, as Storyline serves it over HTTP and WebSocket."""

from __future__ import annotations

import contextlib
import json
from typing import Any, cast

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType

from storyline.compat.strawberry import (
    GraphQLView,
    HTTPException,
    refused_operation_type,
    sub_response_of,
)
from storyline.domain.errors import Unauthenticated
from storyline.graphql_http import (
    GRAPHQL_RESPONSE_JSON,
    JSON,
    negotiate,
    not_executed,
    refusal,
)
from storyline.schema.context import Context
from storyline.schema.errors import for_client
from storyline.schema.fanout import FanoutTransportWS
from storyline.schema.persisted import Refused
from storyline.schema.roots import StorylineSchema
from storyline.schema.subprotocols import LegacyWS
from storyline.services import Services
from storyline.web.graphiql import graphiql_page

SUBSCRIPTIONS_NEED_A_WEBSOCKET = (
    "Subscriptions are served over a WebSocket: connect to /graphql with the"
    " graphql-transport-ws (or graphql-ws) subprotocol."
)


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
            media_type = negotiate(request.headers.get("accept"))
            return Response(
                refusal(refused.reason),
                status_code=refused.status_code,
                media_type=f"{media_type}; charset=utf-8",
            )

    def parse_json(self, data: str | bytes) -> Any:
        """A POST's JSON body: the request, its document resolved (schema/persisted.py)."""
        return self.resolved(super().parse_json(data))

    def parse_query_params(self, params: Any) -> dict[str, Any]:
        """A GET's parameters: the request, its document resolved. Its variables and
        extensions are JSON, decoded as strawberry decodes them but not resolved: they
        are no request."""
        request = dict(params)
        for name in ("variables", "extensions"):
            if request.get(name):
                request[name] = super().parse_json(request[name])
        return cast("dict[str, Any]", self.resolved(request))

    def should_render_graphql_ide(self, request: Any) -> bool:
        # strawberry shows the IDE for a GET without a query: one naming its document by
        # hash (documentId, or Apollo's extensions) is a request.
        params = request.query_params
        named = params.get("documentId") is not None or params.get("extensions") is not None
        return not named and super().should_render_graphql_ide(request)

    def resolved(self, request: object) -> object:
        if not isinstance(request, dict):
            return request  # a batch, or no object: strawberry refuses it
        try:
            return cast("StorylineSchema", self.schema).persisted.resolve(request)
        except Refused as refused:
            raise HTTPException(400, refused.message) from None

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

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL, from this package's files (strawberry's page loads it from a CDN)."""
        return graphiql_page(request)

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
