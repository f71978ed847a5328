"""broadcaster's stock Postgres backend against Storyline's, one test per defect of design.md.

Each defect is tried twice. Against the stock ``Broadcast("postgres://...")`` the test asserts
that the defect shows; against Storyline (``ProjectBroadcast(PostgresListener(...))``, or a
running Storyline watched over websockets) it asserts that it does not:

1. two concurrent first subscribers of a channel: stock loses one (check-then-await race);
2. fifty concurrent subscribes and unsubscribes: stock fails with asyncpg's "another operation
   is in progress" (the LISTEN connection is shared without a lock);
3. the listener's connection is killed: stock never hears another notification, and says
   nothing (no error reaches its subscribers); Storyline reconnects, reports unready meanwhile,
   and re-reads the row of every live subscription afterwards;
4. PostgreSQL restarts: stock hears nothing after; Storyline's watchers get the terminal
   status written after the restart.

Stock channels are private names; Storyline's notifications go on the trigger's one channel
with the trigger's JSON payload, routed by project id.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from broadcaster import Broadcast
from broadcaster._backends.postgres import PostgresBackend

from storyline.live.hub import Mailbox, ProjectBroadcast
from storyline.persistence.embedded import embedded_server
from storyline.persistence.listener import CHANNEL, PostgresListener
from storyline.persistence.migrate import migrate
from tests.support import Api, new_user, storyline, token
from tests.support.databases import (
    STORYLINE_LISTEN,
    backends,
    create_database,
    database_name,
    listener_outage,
    migrated_database,
    restart_postgres,
    the_backend,
)
from tests.support.fakes import FakeVideoService
from tests.support.watch import LEGACY_WS, TRANSPORT_WS, collect, connected, next_event, start

STOCK = "stock"
STORYLINE = "storyline"
SIDES = [STOCK, STORYLINE]

WAIT = 3.0  # the bound of a wait for something that must happen
SILENCE = 2.0  # how long stock is given to show that something never happens
CONNECTING = "storyline-listener"  # the name of PostgresListener's supervisor task
ROUTING = "storyline-router"  # the name of ProjectBroadcast's routing task


# --- one interface over both sides ---------------------------------------------------------


class Inbox(ABC):
    """One subscriber's deliveries, as the versions of the events it receives."""

    resyncs = 0  # how often the hub said "notifications may have been lost" (stock: never)

    @abstractmethod
    async def next(self) -> int: ...


class Hub(ABC):
    def __init__(self, url: str) -> None:
        self.url = url

    @abstractmethod
    def new_key(self) -> str: ...

    @abstractmethod
    def subscribe(self, key: str) -> AbstractAsyncContextManager[Inbox]: ...

    @abstractmethod
    async def _send(self, connection: Any, key: str, version: int) -> None: ...

    async def notify(self, key: str, version: int) -> None:
        """Notify from a connection of its own, as another process would."""
        connection = await asyncio.wait_for(asyncpg.connect(self.url), WAIT)
        try:
            await self._send(connection, key, version)
        finally:
            await connection.close()


class StockInbox(Inbox):
    def __init__(self, subscriber: Any) -> None:
        self._subscriber = subscriber

    async def next(self) -> int:
        event = await self._subscriber.get()
        return int(event.message)


class StockHub(Hub):
    def __init__(self, url: str, broadcast: Broadcast) -> None:
        super().__init__(url)
        self.broadcast = broadcast

    def new_key(self) -> str:
        return f"storyline_test_{uuid.uuid4().hex[:12]}"

    @asynccontextmanager
    async def subscribe(self, key: str) -> AsyncIterator[Inbox]:
        async with self.broadcast.subscribe(key) as subscriber:
            yield StockInbox(subscriber)

    async def _send(self, connection: Any, key: str, version: int) -> None:
        await connection.execute("SELECT pg_notify($1, $2)", key, str(version))


class StorylineInbox(Inbox):
    def __init__(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox

    async def next(self) -> int:
        while True:
            events, resync = await self._mailbox.take()
            self.resyncs += resync
            if events:
                return events[-1].version


class StorylineHub(Hub):
    def __init__(self, url: str, broadcast: ProjectBroadcast) -> None:
        super().__init__(url)
        self.broadcast = broadcast

    def new_key(self) -> str:
        return str(uuid.uuid4())

    @asynccontextmanager
    async def subscribe(self, key: str) -> AsyncIterator[Inbox]:
        async with self.broadcast.subscribe(key) as mailbox:
            yield StorylineInbox(mailbox)

    async def _send(self, connection: Any, key: str, version: int) -> None:
        payload = {
            "id": key,
            "user_id": "someone",
            "xid": None,
            "status": "PROCESSING",
            "version": version,
            "progress": None,
            "stage": None,
            "error_message": None,
            "result_url": None,
            "truncated": False,
            "updated_at": datetime.now(UTC).isoformat(),
        }
        await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps(payload))


def with_application_name(url: str, name: str) -> str:
    """So that the listener's backend can be told apart in pg_stat_activity."""
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def stock_dsn(url: str) -> str:
    """The asyncpg DSN form that makes broadcaster pick its Postgres backend."""
    assert url.startswith("postgresql://"), url
    return "postgres://" + url.removeprefix("postgresql://")


@asynccontextmanager
async def stock_hub(url: str) -> AsyncIterator[Hub]:
    broadcast = Broadcast(stock_dsn(url))
    await asyncio.wait_for(broadcast.connect(), WAIT)
    try:
        yield StockHub(url, broadcast)
    finally:
        listener = broadcast._listener_task
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        backend = broadcast._backend
        assert isinstance(backend, PostgresBackend)
        try:
            await asyncio.wait_for(backend.disconnect(), WAIT)
        except Exception:
            backend._conn.terminate()
            raise


@asynccontextmanager
async def storyline_hub(url: str) -> AsyncIterator[Hub]:
    before = asyncio.all_tasks()
    broadcast = ProjectBroadcast(PostgresListener(url))
    await asyncio.wait_for(broadcast.connect(), WAIT)
    try:
        yield StorylineHub(url, broadcast)
    finally:
        await asyncio.wait_for(broadcast.disconnect(), WAIT)
        left = {task.get_name() for task in asyncio.all_tasks() - before}
        assert not left & {CONNECTING, ROUTING}, left


def open_hub(side: str, url: str) -> AbstractAsyncContextManager[Hub]:
    return stock_hub(url) if side == STOCK else storyline_hub(url)


async def first_arrival(hub: Hub, inbox: Inbox, key: str, *, version: int) -> int | None:
    """Notify a newer version every 0.2 s for up to SILENCE s; the first one received, if any."""
    receiving = asyncio.create_task(inbox.next())
    try:
        deadline = asyncio.get_running_loop().time() + SILENCE
        while asyncio.get_running_loop().time() < deadline:
            await hub.notify(key, version)
            done, _ = await asyncio.wait([receiving], timeout=0.2)
            if done:
                return receiving.result()
            version += 1
        return None
    finally:
        receiving.cancel()
        await asyncio.gather(receiving, return_exceptions=True)


def chain(error: BaseException) -> list[BaseException]:
    """The error and those it was raised while handling."""
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


# --- 1. the check-then-await race in Broadcast.subscribe -----------------------------------


@pytest.mark.parametrize("side", SIDES)
async def test_two_concurrent_first_subscribers_both_receive_the_next_event(
    database_url: str, side: str
) -> None:
    async with open_hub(side, database_url) as hub:
        key = hub.new_key()
        ready = [asyncio.Event(), asyncio.Event()]

        async def subscriber(subscribed: asyncio.Event) -> int:
            try:
                async with hub.subscribe(key) as inbox:
                    subscribed.set()
                    return await asyncio.wait_for(inbox.next(), WAIT)
            finally:
                subscribed.set()

        # Both enter subscribe() in the same turn of the loop: neither is "first" yet.
        tasks = [asyncio.create_task(subscriber(event)) for event in ready]
        try:
            await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ready)), WAIT)
            await hub.notify(key, 1)
            results = await asyncio.wait_for(
                asyncio.gather(*tasks, return_exceptions=True), 2 * WAIT
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    if side == STOCK:
        # Both saw no subscriber and awaited backend.subscribe(): one of them is lost. With the
        # Postgres backend its LISTEN meets the other's on the one connection ("another
        # operation is in progress"), and subscribe()'s cleanup turns that into a KeyError.
        assert results.count(1) == 1, results
        assert any(isinstance(result, BaseException) for result in results), results
    else:
        assert results == [1, 1]


# --- 2. the LISTEN connection shared without a lock ----------------------------------------


@pytest.mark.parametrize("side", SIDES)
async def test_fifty_concurrent_subscribes_and_unsubscribes_raise_nothing(
    database_url: str, side: str
) -> None:
    async with open_hub(side, database_url) as hub:

        async def churn(key: str) -> None:
            async with hub.subscribe(key):
                await asyncio.sleep(0)

        keys = [hub.new_key() for _ in range(50)]
        results = await asyncio.wait_for(
            asyncio.gather(*(churn(key) for key in keys), return_exceptions=True), WAIT
        )
        failures = [result for result in results if isinstance(result, BaseException)]

        if side == STOCK:
            messages_seen = {str(error) for failure in failures for error in chain(failure)}
            assert any("another operation is in progress" in m for m in messages_seen), results
        else:
            assert failures == []
            assert isinstance(hub, StorylineHub)
            assert hub.broadcast.subscriber_count == 0
            # ... and the hub still delivers.
            key = hub.new_key()
            async with hub.subscribe(key) as inbox:
                await hub.notify(key, 1)
                assert await asyncio.wait_for(inbox.next(), WAIT) == 1


# --- 3. no reconnect, and the loss is silent -----------------------------------------------


@pytest.mark.parametrize("side", SIDES)
async def test_the_next_change_arrives_after_the_listener_connection_is_killed(
    database_url: str, side: str
) -> None:
    name = f"storyline-test-{uuid.uuid4().hex[:12]}"
    control = await asyncpg.connect(database_url)
    try:
        async with open_hub(side, with_application_name(database_url, name)) as hub:
            key = hub.new_key()
            async with hub.subscribe(key) as inbox:
                await hub.notify(key, 1)
                assert await asyncio.wait_for(inbox.next(), WAIT) == 1

                killed = await the_backend(control, application_name=name)
                assert await control.fetchval("SELECT pg_terminate_backend($1)", killed)
                arrived = await first_arrival(hub, inbox, key, version=2)

                if side == STOCK:
                    assert arrived is None
                    assert await backends(control, application_name=name) == []  # never back
                    assert inbox.resyncs == 0  # and nobody was told
                else:
                    assert arrived is not None
                    assert inbox.resyncs == 1  # subscribers were told events may be lost
                    assert await the_backend(control, application_name=name) != killed
    finally:
        await control.close()


async def test_storyline_tells_every_reconnect_listener_even_when_one_fails(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The reconnect is a signal of the listener, not an event on its channel; a callback
    that raises is logged, and neither the other callbacks nor the connection pay for it."""
    name = f"storyline-test-{uuid.uuid4().hex[:12]}"
    listener = PostgresListener(with_application_name(database_url, name))
    told: list[str] = []
    second_told = asyncio.Event()

    def failing() -> None:
        told.append("failing")
        raise RuntimeError("a broken reconnect listener")

    def second() -> None:
        told.append("second")
        second_told.set()

    listener.add_reconnect_listener(failing)
    listener.add_reconnect_listener(second)
    control = await asyncpg.connect(database_url)
    try:
        await asyncio.wait_for(listener.connect(), WAIT)
        killed = await the_backend(control, application_name=name)
        assert await control.fetchval("SELECT pg_terminate_backend($1)", killed)
        await asyncio.wait_for(second_told.wait(), WAIT)
        await asyncio.sleep(0.3)  # time for a reconnect loop to show, were there one
        assert told == ["failing", "second"]
        assert await the_backend(control, application_name=name) != killed
        assert (listener.connected, listener.reconnects) == (True, 1)
        assert "a reconnect listener failed" in caplog.text
    finally:
        await control.close()
        await listener.disconnect()


async def test_a_notification_storyline_cannot_route_is_logged_and_the_next_one_arrives(
    server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A database of its own: any other instance listening on the suite's would log too.
    database_url = await migrated_database(server_url)
    async with storyline_hub(database_url) as hub:
        key = hub.new_key()
        async with hub.subscribe(key) as inbox:
            connection = await asyncpg.connect(database_url)
            try:
                for bad in ("not json", json.dumps({"id": key}), "[]"):
                    await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, bad)
            finally:
                await connection.close()
            await hub.notify(key, 1)
            assert await asyncio.wait_for(inbox.next(), WAIT) == 1
    assert caplog.text.count("could not route a notification") == 3


async def readiness(api: Api) -> tuple[int, dict[str, Any]]:
    response = await api.http.get("/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def wait_for_readiness(api: Api, status: int, seconds: float) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        while True:
            code, body = await readiness(api)
            if code == status:
                return body
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), seconds)


async def test_storyline_is_unready_while_its_listener_is_down_then_resyncs_live_subscriptions(
    server_url: str, fake_upstream: tuple[FakeVideoService, str]
) -> None:
    database = await migrated_database(server_url)
    name = database_name(database)
    control = await asyncpg.connect(server_url)  # in the server's "postgres" database
    writer = await asyncpg.connect(database)  # opened before the outage
    try:
        async with storyline(
            database, upstream_url=fake_upstream[1], upstream_token="upstream-secret-token"
        ) as api:
            # Found right after startup: a keepalive query later replaces the LISTEN text.
            killed = await the_backend(control, database=name, query=STORYLINE_LISTEN)
            user = new_user()
            project = (await api.generate(user))["data"]["generateStory"]
            async with connected(api.url, token(user)) as ws:
                await start(ws, project["id"])
                assert (await next_event(ws, within=WAIT))["version"] == project["version"]
                assert (await readiness(api))[0] == 200

                async with listener_outage(control, database, killed):
                    body = await wait_for_readiness(api, 503, WAIT)
                    assert body["listener"] == "disconnected", body
                    # A change nobody hears: the listener cannot reconnect yet.
                    await writer.execute(
                        "UPDATE projects SET progress = 55, stage = 'while-away' WHERE id = $1",
                        uuid.UUID(project["id"]),
                    )
                    await asyncio.sleep(0.3)
                    assert (await readiness(api))[0] == 503

                body = await wait_for_readiness(api, 200, 10)
                assert body == {"database": "ok", "listener": "connected"}
                reconnected = await the_backend(control, database=name, query=STORYLINE_LISTEN)
                assert reconnected != killed

                # The resync: the row's state as of now, though its notification was lost.
                resynced = await next_event(ws, within=WAIT)
                assert (resynced["status"], resynced["progress"], resynced["stage"]) == (
                    "PROCESSING",
                    55,
                    "while-away",
                )
                assert resynced["version"] == project["version"] + 1

                done = await api.report(projectId=project["id"], status="COMPLETED")
                assert "errors" not in done, done
                events = await asyncio.wait_for(collect(ws), WAIT)
                assert [e["status"] for e in events] == ["COMPLETED"]
    finally:
        await writer.close()
        await control.close()


# --- 4. a PostgreSQL restart ---------------------------------------------------------------


@pytest.fixture(scope="module")
def own_server() -> Iterator[Any]:
    """A PostgreSQL of this module's own, to restart at will."""
    root = Path(tempfile.mkdtemp(prefix="storyline-restart-"))
    server = embedded_server(root, cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


async def report_until_accepted(api: Api, seconds: float, **fields: Any) -> dict[str, Any]:
    """The pipeline's report, retried while Storyline's pool reconnects."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        problem: object
        try:
            body = await api.report(**fields)
            if "errors" not in body:
                accepted: dict[str, Any] = body["data"]["updateStatus"]
                return accepted
            problem = body
        except (httpx.HTTPError, AssertionError) as error:
            problem = error
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the report was never accepted: {problem}")
        await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_a_stock_subscriber_hears_nothing_after_a_postgres_restart(own_server: Any) -> None:
    async with open_hub(STOCK, own_server.get_uri()) as hub:
        key = hub.new_key()
        async with hub.subscribe(key) as inbox:
            await hub.notify(key, 1)
            assert await asyncio.wait_for(inbox.next(), WAIT) == 1
            await asyncio.to_thread(restart_postgres, own_server)
            assert await first_arrival(hub, inbox, key, version=2) is None


@pytest.mark.slow
async def test_storyline_watchers_get_the_terminal_status_written_after_a_postgres_restart(
    own_server: Any, fake_upstream: tuple[FakeVideoService, str]
) -> None:
    database = await migrated_database(own_server.get_uri())
    async with storyline(
        database, upstream_url=fake_upstream[1], upstream_token="upstream-secret-token"
    ) as api:
        user = new_user()
        project = (await api.generate(user))["data"]["generateStory"]
        assert project["status"] == "PROCESSING"
        async with (
            connected(api.url, token(user), TRANSPORT_WS) as first,
            connected(api.url, token(user), LEGACY_WS) as second,
            connected(api.url, token(user), TRANSPORT_WS) as third,
        ):
            watchers = (first, second, third)
            for ws in watchers:
                await start(ws, project["id"])
                assert (await next_event(ws, within=WAIT))["version"] == project["version"]
            rest = [asyncio.create_task(collect(ws)) for ws in watchers]
            try:
                await asyncio.to_thread(restart_postgres, own_server)
                completed = await report_until_accepted(
                    api, 10, projectId=project["id"], status="COMPLETED", resultUrl="https://c/v"
                )
                results = await asyncio.wait_for(asyncio.gather(*rest), 10)
            finally:
                for task in rest:
                    task.cancel()
                await asyncio.gather(*rest, return_exceptions=True)
    assert completed["status"] == "COMPLETED"
    for events in results:
        assert events[-1]["status"] == "COMPLETED", events
        assert events[-1]["version"] == completed["version"]
        assert events[-1]["resultUrl"] == "https://c/v"


# --- found while writing these: cleanup after a failed start -------------------------------


async def test_storyline_cleans_up_after_its_listener_failed_to_connect() -> None:
    """What app.py's lifespan does when start-up fails: disconnect() after connect() raised.

    (There connect() gives up after 30 s, or is never reached when the database is down;
    here it is cut short. Either way the Broadcast's listener task was never created.)
    """
    before = asyncio.all_tasks()
    listener = PostgresListener("postgresql://postgres@/nowhere?host=/nonexistent-storyline-dir")
    broadcast = ProjectBroadcast(listener)
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(broadcast.connect(), 0.5)
        # A connect() that failed leaves no reconnecting task behind ...
        assert [t for t in asyncio.all_tasks() - before if t.get_name() == CONNECTING] == []
        # ... and disconnect() after it raises nothing.
        await asyncio.wait_for(broadcast.disconnect(), WAIT)
    finally:
        await listener.disconnect()


# --- every spelling of a PostgreSQL URL ------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql+asyncpg", "postgres"])
async def test_storyline_goes_live_with_a_sqlalchemy_or_short_scheme_url(
    server_url: str, fake_upstream: tuple[FakeVideoService, str], scheme: str
) -> None:
    plain = await create_database(server_url)
    assert plain.startswith("postgresql://"), plain
    url = scheme + plain.removeprefix("postgresql")
    await asyncio.to_thread(migrate, url)
    # The listener gives up after 30 s: fail well before that.
    async with (
        asyncio.timeout(20),
        storyline(
            url, upstream_url=fake_upstream[1], upstream_token="upstream-secret-token"
        ) as api,
    ):
        assert await readiness(api) == (200, {"database": "ok", "listener": "connected"})
        user = new_user()
        project = (await api.generate(user))["data"]["generateStory"]
        async with connected(api.url, token(user)) as ws:
            await start(ws, project["id"])
            assert (await next_event(ws, within=WAIT))["version"] == project["version"]
            done = await api.report(projectId=project["id"], status="COMPLETED")
            assert "errors" not in done, done
            events = await asyncio.wait_for(collect(ws), WAIT)
            assert [event["status"] for event in events] == ["COMPLETED"]
