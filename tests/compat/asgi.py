"""A WebSocket client that talks to an ASGI app in-process, for the compat pins (starlette's
TestClient needs a package the project does not install)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message

TIMEOUT = 5


class Socket:
    def __init__(self, app: ASGIApp, path: str, subprotocols: Sequence[str] = ()) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "ws",
            "server": ("test", 80),
            "client": ("client", 1),
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"host", b"test")],
            "subprotocols": list(subprotocols),
        }

        async def serve() -> None:
            await app(scope, self.inbox.get, self.outbox.put)

        self.served = asyncio.create_task(serve())

    async def connect(self) -> Message:
        self.inbox.put_nowait({"type": "websocket.connect"})
        accepted = await self.receive()
        assert accepted["type"] == "websocket.accept", accepted
        return accepted

    async def receive(self) -> Message:
        return await asyncio.wait_for(self.outbox.get(), TIMEOUT)

    async def receive_text(self) -> str:
        message = await self.receive()
        assert message["type"] == "websocket.send", message
        text: str = message["text"]
        return text

    async def receive_json(self) -> Any:
        return json.loads(await self.receive_text())

    def send_json(self, value: object) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": json.dumps(value)})

    async def closed(self) -> Message:
        """The close the app sends, once it has served the socket to its end."""
        message = await self.receive()
        assert message["type"] == "websocket.close", message
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": message.get("code")})
        await asyncio.wait_for(self.served, TIMEOUT)
        return message

    async def leave(self) -> None:
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.served, TIMEOUT)
