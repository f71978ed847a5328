"""Pins what storyline.compat.starlette relies on: a WebSocket's scope is the app's own,
and sending around starlette's WebSocket leaves it consistent.

A new starlette release is admitted (pyproject.toml's bound) once these pass against it.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState

from storyline.compat.starlette import keep_server_send, server_send
from tests.compat.asgi import Socket

SEEN: list[object] = []


class PassThrough:
    """A middleware as Storyline's own are: it passes the scope on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class KeepingApp(Starlette):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            keep_server_send(scope, send)
        await super().__call__(scope, receive, send)


async def endpoint(socket: WebSocket) -> None:
    await socket.accept()
    send = server_send(socket)
    SEEN.append(send != socket.send)  # the server's own, not the wrapped one
    await send({"type": "websocket.send", "text": "around"})
    SEEN.append(socket.application_state)
    await socket.send_text("through")  # the socket still works as it did
    await socket.close()


async def exchange(app: ASGIApp) -> None:
    socket = Socket(app, "/ws")
    await socket.connect()
    assert await socket.receive_text() == "around"
    assert await socket.receive_text() == "through"
    assert (await socket.closed())["code"] == 1000


async def test_a_send_kept_in_the_scope_reaches_the_endpoint_and_sends_around_the_socket() -> None:
    SEEN.clear()
    routes = [WebSocketRoute("/ws", endpoint)]
    await exchange(KeepingApp(routes=routes, middleware=[Middleware(PassThrough)]))
    assert SEEN == [True, WebSocketState.CONNECTED]


async def test_without_a_kept_send_the_socket_s_own_is_used() -> None:
    SEEN.clear()
    await exchange(Starlette(routes=[WebSocketRoute("/ws", endpoint)]))
    assert SEEN == [False, WebSocketState.CONNECTED]
