"""Live clients that reconnect when dropped, each to the next instance, as the editor does:
an accountChanges dashboard per watching user (again with ``since``: the newest
``updatedAt`` it holds, less a few seconds) and projectStatus watchers of single projects.

Each keeps the highest version it has seen per project (a reconnect may send a state
again) and its newest balance, and counts what breaks the contract's order within one
connection: a version that does not rise, a balance that goes back to an older entry.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timedelta
from typing import Any

import websockets
from tests.support.client import token
from tests.support.watch import connected, next_message, start, start_account
from websockets.asyncio.client import ClientConnection

from chaos.client import DROPPED, UNREACHABLE, Spread, request_id
from chaos.record import Recorder

TERMINAL = ("COMPLETED", "FAILED")
SINCE_MARGIN = timedelta(seconds=5)  # a change is stamped when written, not when committed


class Watcher:
    field = ""

    def __init__(self, user: str, spread: Spread, recorder: Recorder, rng: random.Random) -> None:
        self.user = user
        self.spread = spread
        self.recorder = recorder
        self.rng = rng
        self.token = token(user)
        self.projects: dict[str, tuple[int, str]] = {}  # id -> (highest version, its status)
        self.connected = False
        self.finished = False
        self.subscribed: float | None = None  # when it first asked
        self.last_event = 0.0
        self.connections = 0
        self.disorder: list[str] = []
        self.request_id = ""  # of the current connection, as the instance logs it

    @property
    def state(self) -> str:
        return "finished" if self.finished else "connected" if self.connected else "away"

    async def run(self) -> None:
        while not self.finished:
            url = self.spread.urls[self.spread.next()]
            self.request_id = request_id()
            try:
                async with connected(
                    url, self.token, headers={"X-Request-ID": self.request_id}
                ) as ws:
                    if self.subscribed is None:
                        self.subscribed = time.time()
                    await self.subscribe(ws)
                    await self._read(ws)
            except (OSError, TimeoutError, websockets.InvalidHandshake):
                self.recorder.operation(self.field, UNREACHABLE)
            except websockets.ConnectionClosed:
                self.recorder.operation(self.field, DROPPED)
            except AssertionError as refused:  # the helper's: no connection_ack
                self.recorder.operation(self.field, "refused", detail=str(refused)[:300])
            finally:
                self.connected = False
            if not self.finished:
                await asyncio.sleep(self.rng.uniform(0.2, 1.0))

    async def _read(self, ws: ClientConnection) -> None:
        seen: dict[str, Any] = {}  # this connection's own order
        first = True
        while True:
            message = await next_message(ws)
            kind = message["type"]
            errors = message.get("payload") if kind == "error" else None
            if kind in ("next", "data"):
                errors = message["payload"].get("errors")
            if errors:
                error = errors[0] if isinstance(errors, list) else errors
                code = (error.get("extensions") or {}).get("code", "error")
                self.recorder.operation(
                    self.field, code, detail=str(error)[:300], request_id=self.request_id
                )
                return
            if kind == "complete":
                if not self.finished:
                    self.recorder.operation(self.field, "completed", detail="completed early")
                return
            if first:
                self.recorder.operation(self.field, "ok")
                self.connected, first = True, False
                self.connections += 1
            self.last_event = time.time()
            self.take(message["payload"]["data"][self.field], seen)

    def take_project(self, event: dict[str, Any], seen: dict[str, Any]) -> None:
        project_id, version = event["projectId"], event["version"]
        if version <= seen.get(project_id, 0):
            self.disorder.append(f"{self.field} {project_id}: v{version} after v{seen[project_id]}")
        seen[project_id] = version
        if version > self.projects.get(project_id, (0, ""))[0]:
            self.projects[project_id] = (version, event["status"])
            assert self.subscribed is not None
            self.recorder.received(project_id, version, self.subscribed)

    async def subscribe(self, ws: ClientConnection) -> None:
        raise NotImplementedError

    def take(self, data: dict[str, Any], seen: dict[str, Any]) -> None:
        raise NotImplementedError


class AccountWatcher(Watcher):
    field = "accountChanges"

    def __init__(self, user: str, spread: Spread, recorder: Recorder, rng: random.Random) -> None:
        super().__init__(user, spread, recorder, rng)
        self.entry = 0  # the newest ledger entry's id
        self.balance: int | None = None
        self.newest: datetime | None = None

    async def subscribe(self, ws: ClientConnection) -> None:
        since = None if self.newest is None else (self.newest - SINCE_MARGIN).isoformat()
        await start_account(ws, since=since)

    def take(self, data: dict[str, Any], seen: dict[str, Any]) -> None:
        if data["__typename"] == "BalanceChange":
            entry = data["entry"]
            number = int(entry["id"])
            if number < seen.get("entry", 0):
                self.disorder.append(f"balance: entry {number} after {seen['entry']}")
            if data["balance"] != entry["balanceAfter"]:
                self.disorder.append(f"balance {data['balance']} beside entry {entry}")
            seen["entry"] = number
            if number > self.entry:
                self.entry, self.balance = number, data["balance"]
            self._stamp(entry["createdAt"])
        else:
            self.take_project(data, seen)
            self._stamp(data["updatedAt"])

    def _stamp(self, stamp: str) -> None:
        moment = datetime.fromisoformat(stamp)
        if self.newest is None or moment > self.newest:
            self.newest = moment


class ProjectWatcher(Watcher):
    """One project, until the server completes the subscription after its terminal state."""

    field = "projectStatus"

    def __init__(
        self, user: str, project_id: str, spread: Spread, recorder: Recorder, rng: random.Random
    ) -> None:
        super().__init__(user, spread, recorder, rng)
        self.project_id = project_id

    async def subscribe(self, ws: ClientConnection) -> None:
        await start(ws, self.project_id)

    def take(self, data: dict[str, Any], seen: dict[str, Any]) -> None:
        self.take_project(data, seen)
        if data["status"] in TERMINAL:
            self.finished = True
