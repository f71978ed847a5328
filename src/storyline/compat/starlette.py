"""starlette's undocumented behaviour that Storyline builds on: sending around a WebSocket.

Starlette wraps the ``send`` it passes down with exception handling for every message;
once a WebSocket is accepted those wrappers have nothing to do. The app keeps the
server's own ``send`` in the scope (``keep_server_send``) and the fan-out path sends each
event straight to it (``server_send``). That relies on (starlette 1.10.0):

- the scope an app receives is the very dict its WebSocket endpoints see (routing and
  middleware add keys to it, they do not copy it);
- ``WebSocket.send`` of a ``websocket.send`` message on an accepted socket changes none
  of the socket's state, so messages sent around it leave it consistent.

tests/compat/test_starlette.py pins both.
"""

from __future__ import annotations

from starlette.types import Scope, Send
from starlette.websockets import WebSocket

# The scope key under which the app keeps the server's own send for a WebSocket.
SERVER_SEND = "storyline.send"


def keep_server_send(scope: Scope, send: Send) -> None:
    """Keep the server's ``send`` in a WebSocket's scope, for ``server_send``."""
    scope[SERVER_SEND] = send


def server_send(socket: WebSocket) -> Send:
    """Where to send ``websocket.send`` messages on an accepted socket: straight to the
    server's send when the app kept it (keep_server_send), else the socket's own send."""
    send: Send = socket.scope.get(SERVER_SEND) or socket.send
    return send
