"""Storyline's broadcaster backend: one LISTEN connection for the triggers' two channels.

Unlike broadcaster's stock Postgres backend it never shares the LISTEN connection with
anything else, reconnects with backoff when the connection is lost, and says so (to the
callbacks of ``add_reconnect_listener``), since notifications sent during an outage are
gone for good.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from typing import Any

import asyncpg

from storyline.compat.broadcaster import BroadcastBackend, Event
from storyline.persistence.engine import driver_url

log = logging.getLogger(__name__)

CHANNEL = "storyline_project"  # every project change (migrations 0002, 0004)
LEDGER_CHANNEL = "storyline_ledger"  # every ledger entry (migration 0004)
CHANNELS = (CHANNEL, LEDGER_CHANNEL)


class PostgresListener(BroadcastBackend):
    def __init__(
        self,
        url: str,
        *,
        keepalive_seconds: float = 5.0,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self._url = driver_url(url)
        self._keepalive = keepalive_seconds
        self._max_backoff = max_backoff_seconds
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._connected = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._on_reconnect: list[Callable[[], None]] = []
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def add_reconnect_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` each time the connection is re-established: notifications
        sent while it was away may be lost."""
        self._on_reconnect.append(callback)

    async def connect(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="storyline-listener")
        try:
            await asyncio.wait_for(self._connected.wait(), timeout=30)
        except BaseException:
            await self.disconnect()
            raise

    async def disconnect(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None

    # Logical channels (projects, accounts) are routed in-process: PostgreSQL hears the
    # triggers' channels only, all of them on the one connection.
    async def subscribe(self, channel: str) -> None:
        return None

    async def unsubscribe(self, channel: str) -> None:
        return None

    async def publish(self, channel: str, message: Any) -> None:
        """Send on a connection of its own: the LISTEN connection is never shared."""
        if channel not in CHANNELS:
            raise ValueError(f"not one of the channels Storyline listens on: {channel!r}")
        connection = await asyncpg.connect(self._url)
        try:
            await connection.execute("SELECT pg_notify($1, $2)", channel, json.dumps(message))
        finally:
            await connection.close()

    async def next_published(self) -> Event:
        return await self._events.get()

    async def _supervise(self) -> None:
        failures = 0
        first = True
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(self._url, timeout=10)
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _, lost=lost: lost.set())
                for channel in CHANNELS:
                    await connection.add_listener(channel, self._notified)
                self._connected.set()
                failures = 0
                if not first:
                    self.reconnects += 1
                    log.warning("notification listener reconnected")
                    self._reconnected()
                first = False
                await self._watch(connection, lost)
                log.warning("notification listener lost its connection")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notification listener lost its connection: %s", type(exc).__name__)
            finally:
                self._connected.clear()
                if connection is not None:
                    connection.terminate()
            failures += 1
            await asyncio.sleep(self._backoff(failures))

    async def _watch(self, connection: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Return when the connection is gone; a periodic query finds half-open sockets."""
        while not lost.is_set():
            try:
                await asyncio.wait_for(lost.wait(), timeout=self._keepalive)
            except TimeoutError:
                await connection.execute("SELECT 1", timeout=self._keepalive)

    def _reconnected(self) -> None:
        for callback in self._on_reconnect:
            try:
                callback()
            except Exception:
                # Not the connection's fault: it must not be dropped and re-made for this.
                log.exception("a reconnect listener failed")

    def _backoff(self, failures: int) -> float:
        ceiling = min(self._max_backoff, 0.05 * 2**failures)
        return random.uniform(ceiling / 2, ceiling)

    def _notified(self, connection: object, pid: int, channel: str, payload: str) -> None:
        self._events.put_nowait(Event(channel, payload))
