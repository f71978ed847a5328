"""broadcaster's stock Postgres backend against Storyline's, one test per defect of design.md.

Each defect is tried twice, through one interface over both sides (tests/support/hubs.py).
Against the stock ``Broadcast("postgres://...")`` the test asserts that the defect shows;
against Storyline (``ProjectBroadcast(PostgresListener(...))``) it asserts that it does not:

1. two concurrent first subscribers of a channel: stock loses one (check-then-await race);
2. fifty concurrent subscribes and unsubscribes: stock fails with asyncpg's "another operation
   is in progress" (the LISTEN connection is shared without a lock);
3. the listener's connection is killed: stock never hears another notification, and says
   nothing (no error reaches its subscribers); Storyline reconnects and tells its
   subscribers that events may have been lost.

What a running Storyline's clients see through the same outages (unready meanwhile, every
live subscription re-read after it; a PostgreSQL restart) is in test_listener_outages.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest

from storyline.live.hub import ProjectBroadcast
from storyline.persistence.listener import CHANNEL, PostgresListener
from storyline.persistence.migrate import migrate
from tests.support import new_user, storyline, token
from tests.support.databases import backends, create_database, migrated_database, the_backend
from tests.support.fakes import FakeVideoService
from tests.support.hubs import (
    CONNECTING,
    SIDES,
    STOCK,
    WAIT,
    StorylineHub,
    chain,
    first_arrival,
    open_hub,
    storyline_hub,
    with_application_name,
)
from tests.support.outages import readiness
from tests.support.watch import collect, connected, next_event, start

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


# --- found while writing these: cleanup after a failed start -------------------------------


async def test_storyline_cleans_up_after_its_listener_failed_to_connect() -> None:
    """What storyline.lifespan does when start-up fails: disconnect() after connect() raised.

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
