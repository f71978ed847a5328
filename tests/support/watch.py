"""WebSocket clients for projectStatus, speaking each subprotocol with raw messages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
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
# Every field of both members: what the editor's dashboard asks.
ACCOUNT_CHANGES = """
subscription Dashboard($since: DateTime) {
  accountChanges(since: $since) {
    __typename
    ... on ProjectStatusEvent {
      projectId status version progress stage errorMessage resultUrl updatedAt
    }
    ... on BalanceChange {
      balance
      entry { id kind amount balanceAfter projectId reason createdAt }
    }
  }
}
"""
TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1) + "/graphql"


@asynccontextmanager
async def connected(
    http_url: str,
    token: str | None,
    protocol: str = TRANSPORT_WS,
    *,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[ClientConnection]:
    """An initialised connection; fails unless the server acknowledges. ``headers`` go on
    the upgrade request (an ``X-Request-ID``, say)."""
    async with websockets.connect(
        ws_url(http_url),
        subprotocols=[Subprotocol(protocol)],
        compression=None,
        additional_headers=headers,
    ) as ws:
        payload = {} if token is None else {"Authorization": f"Bearer {token}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "connection_ack", ack
        yield ws


async def start(ws: ClientConnection, project_id: str, op: str = "1") -> None:
    await send_subscribe(ws, op, SUBSCRIBE, {"id": project_id})


async def start_account(ws: ClientConnection, op: str = "1", since: str | None = None) -> None:
    """Subscribe to accountChanges (ACCOUNT_CHANGES), from ``since`` if given."""
    await send_subscribe(ws, op, ACCOUNT_CHANGES, {} if since is None else {"since": since})


async def send_subscribe(
    ws: ClientConnection, op: str, query: str, variables: dict[str, Any]
) -> None:
    """The subscribe (graphql-transport-ws) or start (graphql-ws) message of an operation."""
    kind = "subscribe" if ws.subprotocol == TRANSPORT_WS else "start"
    payload = {"query": query, "variables": variables}
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
    return await next_data(ws, "projectStatus", op, within)


async def next_change(
    ws: ClientConnection, op: str = "1", within: float | None = None
) -> dict[str, Any]:
    """The next accountChanges event of operation ``op``, which must be one."""
    return await next_data(ws, "accountChanges", op, within)


async def next_data(
    ws: ClientConnection, field: str, op: str, within: float | None
) -> dict[str, Any]:
    """The next message, which must be a result of ``op`` without errors: its ``field``."""
    message = await next_message(ws, within)
    assert message["type"] in ("next", "data"), message
    assert message.get("id") == op, message
    assert "errors" not in message["payload"], message
    data: dict[str, Any] = message["payload"]["data"][field]
    return data


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


def steps(events: list[dict[str, Any]]) -> list[tuple[str, int, int | None]]:
    """Each projectStatus event's (status, version, progress)."""
    return [(e["status"], e["version"], e["progress"]) for e in events]


# --- accountChanges ---------------------------------------------------------------------


def is_balance(change: dict[str, Any]) -> bool:
    return bool(change["__typename"] == "BalanceChange")


async def until(
    ws: ClientConnection, done: Callable[[list[dict[str, Any]]], bool], *, within: float = 10
) -> list[dict[str, Any]]:
    """accountChanges events as they come, until ``done(all so far)``."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while not done(seen):
            seen.append(await next_change(ws))
    return seen


def check_order(changes: list[dict[str, Any]]) -> None:
    """The contract's per-project rules and balances that never go back."""
    versions: dict[str, int] = {}
    entry = 0
    for change in changes:
        if is_balance(change):
            assert int(change["entry"]["id"]) >= entry, changes
            assert change["balance"] == change["entry"]["balanceAfter"]
            entry = int(change["entry"]["id"])
        else:
            last = versions.get(change["projectId"], 0)
            assert change["version"] > last, f"{change} after version {last}"
            versions[change["projectId"]] = change["version"]
