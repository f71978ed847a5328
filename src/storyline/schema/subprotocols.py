"""The WebSocket subprotocols' rules that strawberry's handlers leave to the client.

Legacy graphql-ws gets the connection rules strawberry gives graphql-transport-ws:
one ``connection_init`` per socket (strawberry acknowledges every one, whatever its token,
and starts a keep-alive task for each, of which it cancels only the last), and a socket
that sends none within the view's ``connection_init_wait_timeout`` is closed with 4408.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import ConnectionInitMessage

from storyline.schema.context import Context

INIT_TIMEOUT = 4408  # graphql-transport-ws's codes, which strawberry uses for both
TOO_MANY_INITS = 4429


class LegacyWS(BaseGraphQLWSHandler[Context, None]):
    """Legacy graphql-ws: one connection_init, in time."""

    init_received = False
    _init_wait: asyncio.Task[None]

    async def handle(self) -> None:
        waiting = asyncio.create_task(self._close_unless_initialised())
        self._init_wait = waiting
        try:
            await super().handle()  # its end cancels the keep-alive and every operation
        finally:
            waiting.cancel()
            with suppress(asyncio.CancelledError):
                await waiting

    async def _close_unless_initialised(self) -> None:
        await asyncio.sleep(self.view.connection_init_wait_timeout.total_seconds())
        # The client may have left, or been refused, meanwhile: then there is nothing to close.
        with suppress(WebSocketDisconnect, WebSocketDisconnected):
            if not self.init_received:
                await self.websocket.close(INIT_TIMEOUT, "Connection initialisation timeout")

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if self.init_received:
            # A second one would be acknowledged whatever its token, with a second
            # keep-alive that nothing cancels.
            await self._refuse("Too many initialisation requests", TOO_MANY_INITS)
            return
        self.init_received = True
        self._init_wait.cancel()
        await super().handle_connection_init(message)

    async def _refuse(self, reason: str, code: int) -> None:
        await self.send_message({"type": "connection_error", "payload": {"message": reason}})
        await self.websocket.close(code, reason)
