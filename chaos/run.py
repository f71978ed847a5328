"""One run: start, warm up, load with faults, quiesce, let the sweeper settle, check."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from chaos import checks
from chaos.checks import Check
from chaos.cluster import Cluster, Timeouts
from chaos.faults import Injector
from chaos.load import Admins, Users
from chaos.logs import error_lines
from chaos.record import Recorder
from chaos.watchers import AccountWatcher, ProjectWatcher, Watcher


@dataclass(frozen=True)
class Options:
    seconds: float = 600.0  # of load, warm-up included
    warmup: float = 30.0  # of load without faults, before memory's baseline
    users: int = 16
    dashboards: int = 8  # users with an accountChanges watcher
    project_watchers: int = 40  # projectStatus watchers at most at once
    think: tuple[float, float] = (0.5, 2.5)  # a user's pause between two requests
    grants: tuple[float, float] = (0.1, 0.4)  # between two top-ups
    gap: tuple[float, float] = (2.0, 7.0)  # between two faults' starts
    seed: int = 0
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass
class Result:
    options: Options
    recorder: Recorder
    checks: list[Check]
    instances: list[dict[str, Any]]
    logs: Path
    harness_errors: list[str]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks) and not self.harness_errors


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Run:
    def __init__(self, options: Options, work: Path, logs: Path) -> None:
        self.options = options
        self.logs = logs
        self.recorder = Recorder()
        self.rng = random.Random(options.seed)
        self.cluster = Cluster(work, logs, self.recorder, self.rng, timeouts=options.timeouts)
        self.users = [f"chaos-user-{number}" for number in range(options.users)]
        self.watchers: list[Watcher] = []
        self.tasks: dict[str, list[asyncio.Task[None]]] = {"load": [], "watch": [], "probe": []}
        self.errors: list[str] = []  # the harness's own
        self.fault_failures: list[str] = []
        self.idempotency: dict[tuple[str, str], set[str]] = {}

    def spawn(self, group: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        task.add_done_callback(self._died)
        self.tasks[group].append(task)

    def _died(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(f"harness task failed: {task.exception()!r}")

    def watch_project(self, user: str, project_id: str) -> None:
        running = sum(1 for w in self.watchers if isinstance(w, ProjectWatcher) and not w.finished)
        if running < self.options.project_watchers and self.rng.random() < 0.3:
            self.watch(
                ProjectWatcher(user, project_id, self.cluster.spread, self.recorder, self.rng)
            )

    def watch(self, watcher: Watcher) -> None:
        self.watchers.append(watcher)
        self.spawn("watch", watcher.run())

    async def execute(self) -> Result:
        options, cluster = self.options, self.cluster
        try:
            say(f"starting PostgreSQL, the proxy and {cluster.size} instances")
            await cluster.start()
            async with aiohttp.ClientSession() as session:
                idle = {
                    i.name: (await i.metrics(session))["storyline_asyncio_tasks"]
                    for i in cluster.instances
                }
            self.recorder.started = time.time()  # the timeline starts with the clients
            for user in self.users[: options.dashboards]:
                self.watch(AccountWatcher(user, cluster.spread, self.recorder, self.rng))
            await self._until(lambda: all(w.connected for w in self.watchers), 30)
            self.start_load()
            self.spawn("probe", self._sample_memory())
            say(f"load on; warming up for {options.warmup:.0f} s")
            await asyncio.sleep(options.warmup)
            self.recorder.mark("warm")
            warm = {i.name: (i.pid, i.rss()) for i in cluster.instances}
            say("faults on")
            injector = Injector(cluster, self.recorder, self.rng, gap=options.gap)
            await injector.run(options.seconds - options.warmup)
            self.fault_failures = injector.failures
            self.recorder.mark("load-end")
            survivors = {
                i.name: i.rss() for i in cluster.instances if i.alive() and i.pid == warm[i.name][0]
            }
            crashed = [i.name for i in cluster.instances if not i.alive()]
            say("faults over; load off; waiting for the sweeper")
            await self.stop("load")
            await self.stop("probe")
            await cluster.pipeline.stop()
            for instance in cluster.instances:
                if not instance.alive():
                    await instance.start()
            self.recorder.mark("quiesce")
            timeouts = options.timeouts
            await asyncio.sleep(
                max(timeouts.pending, timeouts.processing) + 3 * timeouts.sweep_interval
            )
            await self._until(lambda: self._quiet(2.0), 20)
            found = await self.judge(crashed)
            await self.stop("watch")
            found.append(
                checks.memory(
                    {name: rss for name, (_, rss) in warm.items() if name in survivors}, survivors
                )
            )
            await asyncio.sleep(2)
            async with aiohttp.ClientSession() as session:
                end = {i.name: await i.metrics(session) for i in cluster.instances}
            found.append(checks.tasks(idle, end))
            self.recorder.mark("end")
            lines, unreadable = error_lines(self.logs)
            end_time = time.time()
            found += checks.answers(self.recorder, lines, end_time)
            found.append(checks.logged(lines, unreadable, self.recorder.faults, end_time))
        finally:
            for group in self.tasks:
                await self.stop(group)
            await cluster.close()
        instances = [
            {"name": i.name, "starts": i.starts, "kills": i.kills} for i in cluster.instances
        ]
        return Result(options, self.recorder, found, instances, self.logs, self.errors)

    def start_load(self) -> None:
        options, cluster = self.options, self.cluster
        users = Users(
            cluster.api,
            self.recorder,
            self.rng,
            self.users,
            think=options.think,
            on_project=self.watch_project,
        )
        self.idempotency = users.keys
        for user in self.users:
            self.spawn("load", users.run_user(user))
        admins = Admins(cluster.api, self.recorder, self.rng, self.users)
        self.spawn("load", admins.run(options.grants))

    async def judge(self, crashed: list[str]) -> list[Check]:
        found = [await checks.money(self.cluster.database_url)]
        connection = await asyncpg.connect(self.cluster.database_url)
        try:
            found.append(await checks.projects(connection, self.options.timeouts))
            found.append(await checks.idempotency(connection, self.idempotency))
            found += await checks.watchers(connection, self.watchers)
        finally:
            await connection.close()
        found.append(
            checks.check("no instance exited but those the harness killed", crashed, "3 instances")
        )
        found.append(
            checks.check(
                "every fault was injected and undone",
                self.fault_failures,
                f"{len(self.recorder.faults)} faults",
            )
        )
        return found

    async def _sample_memory(self) -> None:
        while True:
            for instance in self.cluster.instances:
                with contextlib.suppress(Exception):
                    self.recorder.rss[instance.name].append((time.time(), instance.rss()))
            await asyncio.sleep(1)

    def _quiet(self, seconds: float) -> bool:
        last = max((w.last_event for w in self.watchers), default=0.0)
        connected = all(w.connected for w in self.watchers if isinstance(w, AccountWatcher))
        return connected and time.time() - last > seconds

    @staticmethod
    async def _until(condition: Any, limit: float) -> None:
        deadline = time.monotonic() + limit
        while True:
            if condition() or time.monotonic() > deadline:
                return
            await asyncio.sleep(0.1)

    async def stop(self, group: str) -> None:
        tasks, self.tasks[group] = self.tasks[group], []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
