"""A running Storyline through the listener's outages, as its clients see them.

- the listener's connection is killed: /readyz answers 503 until it is back, and every live
  subscription then re-reads its row (a change made meanwhile arrives, though nobody heard
  its notification);
- PostgreSQL restarts: a stock subscriber hears nothing after; Storyline's watchers get the
  terminal status written after the restart.

The same defects tried on the hubs alone, stock against Storyline: test_listener.py.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from storyline.persistence.embedded import embedded_server
from tests.support import UPSTREAM_TOKEN, Api, new_user, storyline, token
from tests.support.databases import migrated_database, restart_postgres
from tests.support.fakes import FakeVideoService
from tests.support.hubs import STOCK, WAIT, first_arrival, open_hub
from tests.support.outages import listened_storyline, readiness, wait_for_readiness
from tests.support.watch import LEGACY_WS, TRANSPORT_WS, collect, connected, next_event, start

# --- the listener's connection killed ------------------------------------------------------


async def test_storyline_is_unready_while_its_listener_is_down_then_resyncs_live_subscriptions(
    server_url: str, fake_upstream: tuple[FakeVideoService, str]
) -> None:
    async with listened_storyline(server_url, fake_upstream[1]) as listened:
        api = listened.api
        user = new_user()
        project = (await api.generate(user))["data"]["generateStory"]
        async with connected(api.url, token(user)) as ws:
            await start(ws, project["id"])
            assert (await next_event(ws, within=WAIT))["version"] == project["version"]
            assert (await readiness(api))[0] == 200

            async with listened.outage():
                body = await wait_for_readiness(api, 503, WAIT)
                assert body["listener"] == "disconnected", body
                # A change nobody hears: the listener cannot reconnect yet.
                await listened.writer.execute(
                    "UPDATE projects SET progress = 55, stage = 'while-away' WHERE id = $1",
                    uuid.UUID(project["id"]),
                )
                await asyncio.sleep(0.3)
                assert (await readiness(api))[0] == 503

            body = await wait_for_readiness(api, 200, 10)
            assert body == {"database": "ok", "listener": "connected"}
            assert await listened.listener_backend() != listened.listening

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
    # A loaded machine may keep the fake video service from answering within the usual 1 s.
    async with storyline(
        database, upstream_url=fake_upstream[1], upstream_token=UPSTREAM_TOKEN, upstream_timeout=10
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
