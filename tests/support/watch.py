"""WebSocket clients for projectStatus, speaking each subprotocol with raw messages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.frames import Close
from websockets.typing import Subprotocol

SUBSCRIBE = """
subscription Watch($id: ID!) {
  projectStatus(projectId: $id) {
    projectId status version progress stage errorMessage resultUrl updatedAt
  }
}
"""
TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1) + "/graphql"


@asynccontextmanager
async def connected(
    http_url: str, token: str | None, protocol: str = TRANSPORT_WS
) -> AsyncIterator[ClientConnection]:
    """An initialised connection; fails unless the server acknowledges."""
    async with websockets.connect(
        ws_url(http_url),
        subprotocols=[Subprotocol(protocol)],
        compression=None,
    ) as ws:
        payload = {} if token is None else {"Authorization": f"Bearer {token}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "connection_ack", ack
        yield ws


async def start(ws: ClientConnection, project_id: str, op: str = "1") -> None:
    kind = "subscribe" if ws.subprotocol == TRANSPORT_WS else "start"
    payload = {"query": SUBSCRIBE, "variables": {"id": project_id}}
    await ws.send(json.dumps({"id": op, "type": kind, "payload": payload}))


async def next_message(ws: ClientConnection, within: float | None = None) -> dict[str, Any]:
    """The next message that is not a keep-alive (graphql-ws's "ka", graphql-transport-ws's
    ping and pong), answering pings as a client must; within ``within`` seconds if given."""
    async with asyncio.timeout(within):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif message["type"] not in ("ka", "pong"):
                return message


async def close_frame(ws: ClientConnection) -> Close:
    """The server's close frame, next after any keep-alives; there must be one."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await next_message(ws, 5)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd


async def next_event(
    ws: ClientConnection, op: str = "1", within: float | None = None
) -> dict[str, Any]:
    """The next projectStatus event of operation ``op``, which must be one."""
    message = await next_message(ws, within)
    assert message["type"] in ("next", "data"), message
    assert message.get("id") == op, message
    assert "errors" not in message["payload"], message
    event: dict[str, Any] = message["payload"]["data"]["projectStatus"]
    return event


async def messages(ws: ClientConnection, op: str = "1") -> AsyncIterator[dict[str, Any]]:
    """Messages of one operation until (and including) its complete or error."""
    while True:
        message = await next_message(ws)
        assert message.get("id") == op, message
        yield message
        if message["type"] in ("complete", "error"):
            return


async def collect(ws: ClientConnection, op: str = "1") -> list[dict[str, Any]]:
    """Every event of a subscription, then checks that the server completed it."""
    events = []
    last: dict[str, Any] = {}
    async for message in messages(ws, op):
        last = message
        if message["type"] in ("next", "data"):
            assert "errors" not in message["payload"], message
            events.append(message["payload"]["data"]["projectStatus"])
    assert last["type"] == "complete", last
    return events
