"""WebSocket watchers that reconnect by themselves, as a browser or a service would, and
check on each (re)connection that the first state they are given is the current one."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from tests.support.client import token
from tests.support.watch import (
    connected,
    is_balance,
    next_change,
    next_event,
    next_message,
    start,
    start_account,
)

# A change is stamped when written, not when committed: a reconnecting accountChanges
# client asks for a little more than it strictly missed (see the README).
SINCE_MARGIN = timedelta(seconds=5)


class Truth:
    """What the database holds now, read behind the balancer's back."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _scalar(self, query: str, **values: str) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(text(query), values) or 0)

    async def version(self, project_id: str) -> int:
        return await self._scalar("SELECT version FROM projects WHERE id = :p", p=project_id)

    async def newest_entry(self, user: str) -> int:
        return await self._scalar("SELECT max(id) FROM ledger WHERE user_id = :u", u=user)

    async def account(self, user: str) -> tuple[dict[str, tuple[str, int]], int, int]:
        """(status, version) by project, the balance and the newest ledger entry's id."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT id::text, status, version FROM projects WHERE user_id = :u"),
                {"u": user},
            )
            balance = await conn.scalar(
                text("SELECT balance FROM accounts WHERE user_id = :u"), {"u": user}
            )
        return {r[0]: (r[1], r[2]) for r in rows}, int(balance), await self.newest_entry(user)


@dataclass
class Watcher:
    """One WebSocket through the balancer, watching one project (projectStatus) or the
    user's account (accountChanges when ``project_id`` is None), reconnecting on a drop."""

    user: str
    project_id: str | None
    held: dict[str, dict[str, Any]] = field(default_factory=dict)  # newest state by project
    balance: dict[str, Any] | None = None
    dropped_at: list[float] = field(default_factory=list)
    resumed_at: list[float] = field(default_factory=list)  # first event after each drop
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    this_connection: dict[str, int] = field(default_factory=dict)  # versions on this socket

    async def run(self, url: str, truth: Truth) -> None:
        """Until the server completes the subscription (projectStatus only)."""
        while True:
            established = False
            try:
                async with connected(url, token(self.user)) as ws:
                    await self._resubscribe(ws, truth)
                    established = True
                    self.ready.set()
                    if await self._follow(ws):
                        return
            except (WebSocketException, ConnectionError):
                if established:
                    self.dropped_at.append(time.monotonic())
                await asyncio.sleep(random.uniform(0.05, 0.2))

    async def _resubscribe(self, ws: ClientConnection, truth: Truth) -> None:
        """Subscribe; the first event must be the current state, read from the database
        just before subscribing (``floor``) and just after it arrived (``ceiling``)."""
        self.this_connection = {}
        if self.project_id is not None:
            floor = await truth.version(self.project_id)
            await start(ws, self.project_id)
            first = await next_event(ws, within=10)
            arrived = time.monotonic()
            ceiling = await truth.version(self.project_id)
            assert floor <= first["version"] <= ceiling, (floor, first, ceiling)
            self._project(first)
        else:
            since = None
            if self.held:
                newest = max(datetime.fromisoformat(e["updatedAt"]) for e in self.held.values())
                since = (newest - SINCE_MARGIN).isoformat()
            floor = await truth.newest_entry(self.user)
            await start_account(ws, since=since)
            first = await next_change(ws, within=10)
            arrived = time.monotonic()
            ceiling = await truth.newest_entry(self.user)
            assert is_balance(first), f"the first accountChanges event is not the balance: {first}"
            assert floor <= int(first["entry"]["id"]) <= ceiling, (floor, first, ceiling)
            self._balance(first)
        if len(self.resumed_at) < len(self.dropped_at):
            self.resumed_at.append(arrived)

    async def _follow(self, ws: ClientConnection) -> bool:
        """Events until the server completes the operation (True)."""
        while True:
            message = await next_message(ws)
            if message["type"] == "complete":
                return True
            assert message["type"] == "next", message
            assert "errors" not in message["payload"], message
            data = message["payload"]["data"]
            if "projectStatus" in data:
                self._project(data["projectStatus"])
            elif is_balance(data["accountChanges"]):
                self._balance(data["accountChanges"])
            else:
                self._project(data["accountChanges"])

    def _project(self, event: dict[str, Any]) -> None:
        """Versions rise within a connection and never go back across reconnections."""
        project, version = event["projectId"], event["version"]
        assert version > self.this_connection.get(project, 0), f"{event} repeated or late"
        held = self.held.get(project)
        assert held is None or version >= held["version"], f"{event} after {held}"
        self.this_connection[project] = version
        self.held[project] = event

    def _balance(self, change: dict[str, Any]) -> None:
        assert change["balance"] == change["entry"]["balanceAfter"], change
        if self.balance is not None:
            assert int(change["entry"]["id"]) >= int(self.balance["entry"]["id"]), change
        self.balance = change

    def holds(self, projects: dict[str, tuple[str, int]], balance: int, entry: int) -> bool:
        """Whether the newest state held is the database's, for what this watcher watches:
        ``projects`` ((status, version) by id), ``balance`` and the newest ledger ``entry``."""
        held = {p: (e["status"], e["version"]) for p, e in self.held.items()}
        if self.project_id is not None:
            return held == {self.project_id: projects[self.project_id]}
        if self.balance is None:
            return False
        newest = (self.balance["balance"], int(self.balance["entry"]["id"]))
        return held == projects and newest == (balance, entry)
