"""One run: start, warm up, load with faults, quiesce, let the sweeper settle, check."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from chaos import checks
from chaos.checks import Check
from chaos.cluster import Cluster, Timeouts
from chaos.faults import KINDS, Injector
from chaos.load import Admins, Users
from chaos.logs import error_lines
from chaos.record import Recorder
from chaos.watchers import AccountWatcher, ProjectWatcher, Watcher

SETTLE = 10.0  # seconds for the instances' task counts to come back to idle


@dataclass(frozen=True)
class Options:
    seconds: float = 600.0  # of load, warm-up included
    warmup: float = 30.0  # of load without faults, before memory's baseline
    users: int = 16
    dashboards: int = 8  # users with an accountChanges watcher
    project_watchers: int = 40  # projectStatus watchers at most at once
    think: tuple[float, float] = (0.5, 2.5)  # a user's pause between two requests
    grants: tuple[float, float] = (0.1, 0.4)  # between two top-ups
    gap: tuple[float, float] = (1.5, 5.0)  # between two faults' starts
    seed: int = 0
    balancer: bool = True  # through HAProxy, when it is installed
    kinds: tuple[str, ...] = KINDS  # of faults
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass
class Result:
    options: Options
    recorder: Recorder
    checks: list[Check]
    instances: list[dict[str, Any]]
    balanced: bool
    upstream: dict[str, int]  # the video service's answers, by call and fault
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
        self.cluster = Cluster(
            work,
            logs,
            self.recorder,
            self.rng,
            timeouts=options.timeouts,
            balancer=options.balancer,
        )
        self.users = [f"chaos-user-{number}" for number in range(options.users)]
        self.watchers: list[Watcher] = []
        self.tasks: dict[str, list[asyncio.Task[None]]] = {"load": [], "watch": [], "probe": []}
        self.errors: list[str] = []  # the harness's own
        self.idempotency: dict[tuple[str, str], set[str]] = {}
        self.idle: dict[str, float] = {}  # each instance's task count before any client
        self.checks: list[Check] = []

    async def execute(self) -> Result:
        try:
            await self.start()
            warm = await self.warm_up()
            injector = Injector(
                self.cluster,
                self.recorder,
                self.rng,
                gap=self.options.gap,
                kinds=self.options.kinds,
            )
            say("faults on")
            await injector.run(self.options.seconds - self.options.warmup)
            self.recorder.mark("load-end")
            lived = {
                i.name: i.rss()
                for i in self.cluster.instances
                if i.alive() and i.pid == warm[i.name][0]
            }
            crashed = [i.name for i in self.cluster.instances if not i.alive()]
            await self.quiesce()
            await self.judge(crashed, injector.failures)
            before = {name: rss for name, (_, rss) in warm.items() if name in lived}
            self.checks.append(checks.memory(before, lived))
            await self.after_clients()
        finally:
            for group in self.tasks:
                await self.stop(group)
            await self.cluster.close()
        instances = [
            {"name": i.name, "starts": i.starts, "kills": i.kills} for i in self.cluster.instances
        ]
        return Result(
            self.options,
            self.recorder,
            self.checks,
            instances,
            self.cluster.balanced,
            dict(self.cluster.video.answered),
            self.logs,
            self.errors,
        )

    async def start(self) -> None:
        cluster = self.cluster
        say(f"starting PostgreSQL, the proxy and {cluster.size} instances")
        await cluster.start()
        self.idle = await self.metric("storyline_asyncio_tasks")
        self.recorder.started = time.time()  # the timeline starts with the clients
        for user in self.users[: self.options.dashboards]:
            self.watch(AccountWatcher(user, cluster.spread, self.recorder, self.rng))
        await until(lambda: all(w.connected for w in self.watchers), 30)

    async def warm_up(self) -> dict[str, tuple[int, int]]:
        """Load without faults; then each instance's (pid, RSS), memory's baseline."""
        options, cluster = self.options, self.cluster
        users = Users(cluster.api, self.recorder, self.rng, options.think, self.watch_project)
        self.idempotency = users.keys
        for user in self.users:
            self.spawn("load", users.run_user(user))
        admins = Admins(cluster.api, self.recorder, self.rng, self.users)
        self.spawn("load", admins.run(options.grants))
        self.spawn("probe", self.sample_memory())
        via = "HAProxy" if cluster.balanced else "the instances in turn"
        say(f"load on, through {via}; warming up for {options.warmup:.0f} s")
        await asyncio.sleep(options.warmup)
        self.recorder.mark("warm")
        return {i.name: (i.pid, i.rss()) for i in cluster.instances}

    async def quiesce(self) -> None:
        """Load and pipeline off, every instance up, then time for the sweeper to settle
        what is left and for the watchers to hear of it."""
        say("faults over; load off; waiting for the sweeper")
        await self.stop("load")
        await self.stop("probe")
        await self.cluster.pipeline.stop()
        for instance in self.cluster.instances:
            if not instance.alive():
                await instance.start()
        self.recorder.mark("quiesce")
        timeouts = self.options.timeouts
        await asyncio.sleep(
            max(timeouts.pending, timeouts.processing) + 2 * timeouts.sweep_interval
        )
        await until(lambda: self.quiet(2.0), 20)

    async def judge(self, crashed: list[str], fault_failures: list[str]) -> None:
        """What the database holds, and what every client holds of it."""
        self.checks.append(await checks.money(self.cluster.database_url))
        connection = await asyncpg.connect(self.cluster.database_url)
        try:
            self.checks.append(await checks.projects(connection, self.options.timeouts))
            self.checks.append(await checks.idempotency(connection, self.idempotency))
            self.checks += await checks.watchers(connection, self.watchers)
        finally:
            await connection.close()
        every = f"{len(self.cluster.instances)} instances"
        self.checks.append(
            checks.check("no instance exited but those the harness killed", crashed, every)
        )
        self.checks.append(
            checks.check(
                "every fault was injected and undone",
                fault_failures,
                f"{len(self.recorder.faults)} faults",
            )
        )

    async def after_clients(self) -> None:
        """Once every client has gone: tasks back to idle, and the logs explained."""
        await self.stop("watch")
        # Connections close on the server's side, a last sweep ends: the count may take a
        # moment to come down; what is still there after SETTLE seconds stays.
        deadline = time.monotonic() + SETTLE
        while True:
            end = await self.metrics()
            back = all(end[name]["storyline_asyncio_tasks"] <= n for name, n in self.idle.items())
            if back or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        self.checks.append(checks.tasks(self.idle, end))
        self.recorder.mark("end")
        lines, unreadable = error_lines(self.logs)
        now = time.time()
        self.checks += checks.answers(self.recorder, lines, now)
        self.checks.append(checks.logged(lines, unreadable, self.recorder.faults, now))

    def watch_project(self, user: str, project_id: str) -> None:
        running = sum(isinstance(w, ProjectWatcher) and not w.finished for w in self.watchers)
        if running < self.options.project_watchers and self.rng.random() < 0.3:
            spread = self.cluster.spread
            self.watch(ProjectWatcher(user, project_id, spread, self.recorder, self.rng))

    def watch(self, watcher: Watcher) -> None:
        self.watchers.append(watcher)
        self.spawn("watch", watcher.run())

    def spawn(self, group: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        task.add_done_callback(self._died)
        self.tasks[group].append(task)

    def _died(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(f"harness task failed: {task.exception()!r}")

    async def stop(self, group: str) -> None:
        tasks, self.tasks[group] = self.tasks[group], []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def sample_memory(self) -> None:
        while True:
            for instance in self.cluster.instances:
                with contextlib.suppress(Exception):  # one being restarted
                    self.recorder.rss[instance.name].append((time.time(), instance.rss()))
            await asyncio.sleep(1)

    async def metrics(self) -> dict[str, dict[str, float]]:
        async with aiohttp.ClientSession() as session:
            return {i.name: await i.metrics(session) for i in self.cluster.instances}

    async def metric(self, name: str) -> dict[str, float]:
        return {instance: samples[name] for instance, samples in (await self.metrics()).items()}

    def quiet(self, seconds: float) -> bool:
        """Every dashboard connected, and no watcher has heard anything for ``seconds``."""
        last = max((w.last_event for w in self.watchers), default=0.0)
        connected = all(w.connected for w in self.watchers if isinstance(w, AccountWatcher))
        return connected and time.time() - last > seconds


async def until(condition: Callable[[], bool], limit: float) -> None:
    deadline = time.monotonic() + limit
    while True:
        if condition() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.1)
