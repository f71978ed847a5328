"""The WebSocket subprotocols' rules that strawberry's handlers leave to the client.

strawberry's handlers index a message as the protocol says it should look: a message
that is no JSON object, an ``id`` that is a list or object (unhashable), or a ``start``
without its payload raises out of the handler, so the socket drops without a close frame
and an ERROR is logged for the client's mistake; an integer or null id is taken as an
operation id. Both handlers here check a message's shape before strawberry dispatches it,
and refuse a malformed one as a protocol error: graphql-transport-ws closes with 4400
(as its specification says); legacy graphql-ws, which has no close codes of its own,
sends ``connection_error`` with the reason, then closes with 4400 too.

Legacy graphql-ws also gets the connection rules strawberry gives graphql-transport-ws:
one ``connection_init`` per socket (strawberry acknowledges every one, whatever its token,
and starts a keep-alive task for each, of which it cancels only the last), and a socket
that sends none within the view's ``connection_init_wait_timeout`` is closed with 4408.

Both refuse a ``connection_init`` that names no valid caller (schema/context.py says where
the token may be) the same way, here (``refusal``): closed with 4403 and a reason that says
why, ``Forbidden: The token has expired.`` say, never the token; legacy graphql-ws sends
that reason in a ``connection_error`` first. strawberry's own refusal would close
graphql-transport-ws with a bare ``Forbidden`` and graphql-ws with 1011, no reason given.

A subscribe (start) payload may name its document by hash instead of its text, as an HTTP
request may (schema/persisted.py): both handlers resolve it to the text before strawberry
(or the fan-out) sees the operation, and answer a refusal as an ``error`` for that
operation id, BAD_USER_INPUT, as they answer a document that does not validate.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Any, cast

from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage as TransportInitMessage,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    Message as TransportMessage,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    SubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage,
    OperationMessage,
    StartMessage,
)

from storyline.compat.strawberry import InitWait, LegacyWSHandler, TransportWSHandler
from storyline.domain.errors import Unauthenticated
from storyline.schema.context import Context
from storyline.schema.persisted import Refused

if TYPE_CHECKING:
    from storyline.schema.roots import StorylineSchema

PROTOCOL_ERROR = 4400
FORBIDDEN = 4403
INIT_TIMEOUT = 4408  # graphql-transport-ws's codes, which strawberry uses for both
TOO_MANY_INITS = 4429
MAX_REASON_BYTES = 123  # what a close frame has room for
# A payload names its document by its text, its documentId or (in extensions) its hash.
PAYLOAD_NAMES = frozenset({"query", "documentId", "extensions"})
NO_DOCUMENT = "A payload must be an object with a query or a documentId"


def refusal(context: Context, payload: dict[str, object] | None) -> str | None:
    """Why a connection_init with ``payload`` is refused, as the close reason; None when it
    names a valid caller (who is then known to ``context``, authenticated once)."""
    context.connection_params = payload
    try:
        context.principal  # noqa: B018 - authenticates
    except Unauthenticated as refused:
        reason = f"Forbidden: {refused.message}"
        return reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")
    return None


def forget_credentials(context: Context) -> None:
    """Drop the connection_init payload strawberry keeps in the context once the caller it
    names is known: an idle socket holds no token (and no bytes it does not need)."""
    if context.authenticated:
        context.connection_params = None


def _malformed(message: object, *, with_id: tuple[str, str], with_query: str) -> str | None:
    """Why a client's message is malformed, or None. ``with_id``: the types that name an
    operation; ``with_query``: the type whose payload holds a document."""
    if not isinstance(message, dict):
        return "A message must be a JSON object"
    if message.get("type") in with_id and not isinstance(message.get("id"), str):
        return "A message id must be a string"
    if message.get("type") == with_query:
        payload = message.get("payload")
        if not isinstance(payload, dict) or not PAYLOAD_NAMES.intersection(payload):
            return NO_DOCUMENT
    return None


def resolved(schema: object, payload: dict[str, Any]) -> dict[str, Any] | Refused:
    """A subscribe (or start) payload with the text of the document it names as its
    ``query`` (schema/persisted.py), or why it is refused."""
    persisted = cast("StorylineSchema", schema).persisted
    try:
        return persisted.resolve(payload)
    except Refused as refused:
        return refused


class TransportWS(TransportWSHandler[Context, None]):
    """graphql-transport-ws, each message's shape checked before it is dispatched."""

    async def handle_message(self, message: TransportMessage) -> None:
        reason = _malformed(message, with_id=("subscribe", "complete"), with_query="subscribe")
        if reason is not None:
            await self.handle_invalid_message(reason)  # closes with 4400 and the reason
            return
        await super().handle_message(message)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        # strawberry's refusals come first: not acknowledged (4401), an id in use (4409).
        if self.connection_acknowledged and message["id"] not in self.operations:
            payload = resolved(self.schema, cast("dict[str, Any]", message["payload"]))
            if isinstance(payload, Refused):
                error = {"id": message["id"], "type": "error", "payload": [payload.formatted]}
                await self.send_message(cast("TransportMessage", error))
                return
            if "query" not in payload:  # only extensions, and no hash in them
                await self.handle_invalid_message(NO_DOCUMENT)
                return
            message = cast("SubscribeMessage", {**message, "payload": payload})
        await super().handle_subscribe(message)

    async def handle_connection_init(self, message: TransportInitMessage) -> None:
        payload = message.get("payload", {})
        # strawberry's refusals come first: a payload that is no object (4400), a second
        # connection_init (4429), one after the timeout.
        if isinstance(payload, dict) and not (
            self.connection_init_received or self.connection_timed_out
        ):
            reason = refusal(self.context, payload)
            if reason is not None:
                self.connection_init_received = True  # the init timeout has nothing to close
                await self.websocket.close(code=FORBIDDEN, reason=reason)
                return
        await super().handle_connection_init(message)
        forget_credentials(self.context)


class LegacyWS(LegacyWSHandler[Context, None]):
    """Legacy graphql-ws: one connection_init, in time; each message's shape checked."""

    init_received = False

    async def handle(self) -> None:
        # A timer, not a task asleep for the whole wait (as for graphql-transport-ws).
        delay = self.view.connection_init_wait_timeout.total_seconds()
        self.init_wait = InitWait(delay, self.close_uninitialised)
        try:
            await super().handle()  # its end cancels the keep-alive and every operation
        finally:
            await self.init_wait.end()

    async def close_uninitialised(self) -> None:
        # The client may have left, or been refused, meanwhile: then there is nothing to close.
        with suppress(WebSocketDisconnect, WebSocketDisconnected):
            await self.websocket.close(INIT_TIMEOUT, "Connection initialisation timeout")

    async def handle_message(self, message: OperationMessage) -> None:
        reason = _malformed(message, with_id=("start", "stop"), with_query="start")
        if reason is not None:
            await self.refuse(reason, PROTOCOL_ERROR)
            return
        await super().handle_message(message)

    async def handle_start(self, message: StartMessage) -> None:
        if self.connection_acknowledged:  # else strawberry closes with 4401
            payload = resolved(self.schema, cast("dict[str, Any]", message["payload"]))
            if isinstance(payload, Refused):
                # As strawberry would, the operation the id named before is stopped.
                await self.cleanup_operation(message["id"])
                error = {"type": "error", "id": message["id"], "payload": payload.formatted}
                await self.send_message(cast("OperationMessage", error))
                return
            if "query" not in payload:
                await self.refuse(NO_DOCUMENT, PROTOCOL_ERROR)
                return
            message = cast("StartMessage", {**message, "payload": payload})
        await super().handle_start(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if self.init_received:
            # A second one would be acknowledged whatever its token, with a second
            # keep-alive that nothing cancels.
            await self.refuse("Too many initialisation requests", TOO_MANY_INITS)
            return
        self.init_received = True
        self.init_wait.stop()
        payload = message.get("payload")
        if payload is not None and not isinstance(payload, dict):
            await self.refuse("The connection_init payload must be an object", PROTOCOL_ERROR)
            return
        reason = refusal(self.context, payload)
        if reason is not None:
            await self.refuse(reason, FORBIDDEN)
            return
        await super().handle_connection_init(message)
        forget_credentials(self.context)

    async def refuse(self, reason: str, code: int) -> None:
        await self.send_message({"type": "connection_error", "payload": {"message": reason}})
        await self.websocket.close(code, reason)
