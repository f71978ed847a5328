"""Two ``storyline serve`` instances behind HAProxy (the configuration docs/operations.md
recommends): HTTP and WebSockets through it, one instance killed mid-stream, and its
watchers reconnecting through the balancer to the other, current state first, nothing lost.

Set STORYLINE_BALANCER_TIMINGS to a file path to have the test append its timings (from the
kill to every watcher holding the current state again) to it, one JSON object a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from storyline.auth import Role
from storyline.persistence.engine import sqlalchemy_url
from storyline.persistence.invariants import violations
from tests.support import GENERATE, REPORT, Client, client, new_user, token
from tests.support.balancer import HAPROXY, Balancer, balancing
from tests.support.databases import migrated_database
from tests.support.fakes import FakeVideoService
from tests.support.processes import served_together, server_env
from tests.support.reconnecting import Truth, Watcher

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (`make balancer`)"),
]

USERS, PROJECTS_EACH, PROJECT_WATCHERS_EACH, ACCOUNT_WATCHERS_EACH = 4, 2, 4, 2
PIPELINE = token("pipeline", Role.PIPELINE)


class Reporter:
    """The pipeline's reports through the balancer, retried as a pipeline client does when
    the instance answering one dies under it (a repeated report changes nothing)."""

    def __init__(self, http: Client) -> None:
        self.http = http
        self.rounds = 0
        self.retried = 0

    async def send(self, **fields: Any) -> None:
        for _ in range(40):
            try:
                response = await self.http.request(REPORT, {"input": fields}, auth=PIPELINE)
            except httpx.TransportError:
                pass
            else:
                if response.status_code not in (502, 503, 504):
                    assert response.status_code == 200, response.text
                    assert "errors" not in response.json(), response.text
                    return
            self.retried += 1
            await asyncio.sleep(0.05)
        raise AssertionError(f"report {fields} not answered after 40 tries")

    async def progress(self, projects: list[str], stop: asyncio.Event) -> None:
        """A round of PROCESSING reports for every project, progress one higher each round."""
        for progress in range(1, 100):
            if stop.is_set():
                return
            await asyncio.gather(
                *(self.send(projectId=p, status="PROCESSING", progress=progress) for p in projects)
            )
            self.rounds = progress
            await asyncio.sleep(0.02)
        raise AssertionError("the reports ran out of progress before the test stopped them")


async def _metric(url: str, sample: str) -> int:
    """A sample of the instance's own /metrics (read from it, not through the balancer)."""
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{url}/metrics")).text
    found = re.search(rf"^{re.escape(sample)} (\S+)$", metrics, re.MULTILINE)
    assert found, metrics
    return int(float(found[1]))


OPEN_WEBSOCKETS = "storyline_websocket_connections"
REPORTS_ANSWERED = 'storyline_graphql_requests_total{operation="updateStatus",outcome="ok"}'


async def _until(
    done: Callable[[], bool], tasks: list[asyncio.Task[Any]], within: float, what: str
) -> None:
    """Wait (bounded) until ``done()``, failing as soon as one of ``tasks`` has failed."""
    deadline = time.monotonic() + within
    while not done():
        for task in tasks:
            if task.done() and task.exception() is not None:
                task.result()
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def _cancelled_on_exit() -> AsyncIterator[list[asyncio.Task[Any]]]:
    """A list for tasks, each cancelled (if still running) and awaited on the way out."""
    tasks: list[asyncio.Task[Any]] = []
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _marked_down(balancer: Balancer, server: str, since: float) -> float:
    """Seconds from ``since`` until HAProxy has taken ``server`` out of rotation."""
    await balancer.until({server: "DOWN"})
    return time.monotonic() - since


def _resumed(watchers: list[Watcher], expected: int) -> bool:
    """Whether ``expected`` watchers lost their connection and all hold the current state."""
    dropped = [w for w in watchers if w.dropped_at]
    return len(dropped) == expected and all(len(w.resumed_at) == len(w.dropped_at) for w in dropped)


async def test_watchers_of_a_killed_instance_reconnect_through_the_balancer_and_lose_nothing(
    server_url: str, fake_upstream: tuple[FakeVideoService, str], tmp_path: Path
) -> None:
    database_url = await migrated_database(server_url)
    env = server_env(database_url, upstream_url=fake_upstream[1])
    engine = create_async_engine(sqlalchemy_url(database_url), pool_size=20)
    truth = Truth(engine)
    users = [new_user() for _ in range(USERS)]
    owned: dict[str, list[str]] = {user: [] for user in users}
    watchers: list[Watcher] = []
    try:
        async with (
            served_together(env, [tmp_path / "a.log", tmp_path / "b.log"]) as (a, b),
            balancing({"a": a.url, "b": b.url}, tmp_path) as balancer,
            client(balancer.url) as http,
            _cancelled_on_exit() as tasks,  # before the instances stop
        ):
            for user in users:
                for _ in range(PROJECTS_EACH):
                    variables = {"input": {"prompt": "A cat", "quality": "SD"}}
                    created = await http.data(GENERATE, variables, auth=token(user))
                    owned[user].append(created["generateStory"]["id"])
            for user in users:
                watchers += [Watcher(user, None) for _ in range(ACCOUNT_WATCHERS_EACH)]
                watchers += [
                    Watcher(user, p) for p in owned[user] for _ in range(PROJECT_WATCHERS_EACH)
                ]
            for watcher in watchers:  # one after the other, so that leastconn alternates
                tasks.append(asyncio.create_task(watcher.run(balancer.url, truth)))
                await _until(watcher.ready.is_set, tasks, 10, "a watcher's first event")
            on_a, on_b = (
                await _metric(a.url, OPEN_WEBSOCKETS),
                await _metric(b.url, OPEN_WEBSOCKETS),
            )
            assert on_a + on_b == len(watchers)
            assert min(on_a, on_b) >= len(watchers) // 4, f"spread {on_a} / {on_b}"

            reporter, stop = Reporter(http), asyncio.Event()
            projects = [p for user in users for p in owned[user]]
            reporting = asyncio.create_task(reporter.progress(projects, stop))
            tasks.append(reporting)
            await _until(lambda: reporter.rounds >= 3, tasks, 15, "three rounds of reports")
            for instance in (a, b):  # HTTP is balanced too
                assert await _metric(instance.url, REPORTS_ANSWERED) > 0
            killed_at = time.monotonic()
            os.killpg(a.process.pid, signal.SIGKILL)
            marked_down = asyncio.create_task(_marked_down(balancer, "a", killed_at))
            tasks.append(marked_down)
            await _until(lambda: _resumed(watchers, on_a), tasks, 15, "every watcher back")
            down_after = await marked_down
            assert await _metric(b.url, OPEN_WEBSOCKETS) == len(watchers)
            resumed_round = reporter.rounds
            await _until(lambda: reporter.rounds >= resumed_round + 3, tasks, 15, "more reports")
            stop.set()
            await reporting

            for user in users:  # one project ends well, the other fails and is refunded
                first, second = owned[user]
                await reporter.send(projectId=first, status="COMPLETED", resultUrl="https://cdn/x")
                await reporter.send(projectId=second, status="FAILED", errorMessage="no luck")
                variables = {"input": {"prompt": "A dog", "quality": "SD"}}
                await http.data(GENERATE, variables, auth=token(user))  # a new one, charged
            final = {user: await truth.account(user) for user in users}
            everything = "every watcher holding the database's state"
            await _until(
                lambda: all(w.holds(*final[w.user]) for w in watchers), tasks, 15, everything
            )
            for watcher, task in zip(watchers, tasks, strict=False):
                if watcher.project_id is not None:  # the server completes it at the end
                    await asyncio.wait_for(task, 5)
    finally:
        async with engine.connect() as conn:
            broken = await violations(conn)
        await engine.dispose()
    assert not broken, f"money invariants broken: {broken}"

    dropped = [w for w in watchers if w.dropped_at]
    assert all(len(w.dropped_at) == 1 for w in dropped), "a watcher dropped twice"
    kinds = {w.project_id is None for w in dropped}
    kept = {w.project_id is None for w in watchers if not w.dropped_at}
    assert kinds == kept == {True, False}, "both kinds of watcher on both instances"
    _record(watchers, dropped, killed_at, down_after, reporter)


def _record(
    watchers: list[Watcher],
    dropped: list[Watcher],
    killed_at: float,
    down_after: float,
    reporter: Reporter,
) -> None:
    """Append this run's timings to $STORYLINE_BALANCER_TIMINGS, when it is set."""
    path = os.environ.get("STORYLINE_BALANCER_TIMINGS")
    if not path:
        return
    resumed = [w.resumed_at[0] - killed_at for w in dropped]
    timings = {
        "watchers": len(watchers),
        "on_killed_instance": len(dropped),
        "kill_to_first_drop_s": round(min(w.dropped_at[0] for w in dropped) - killed_at, 4),
        "kill_to_first_current_state_s": round(min(resumed), 4),
        "kill_to_median_current_state_s": round(statistics.median(resumed), 4),
        "kill_to_all_current_state_s": round(max(resumed), 4),
        "kill_to_marked_down_s": round(down_after, 4),
        "reports_retried": reporter.retried,
    }
    with Path(path).open("a") as out:
        out.write(json.dumps(timings) + "\n")
