"""The faults: one starts every few seconds (at random), each lasts a few seconds and
undoes itself, and several may be on at once.

The first of each kind come in a shuffled round at the start, so that a short run has
them all; after it, kinds are drawn at random. A fault whose target is busy (an instance
already faulted, PostgreSQL restarting) waits for a later turn. At most two instances of
three are faulted at once, and the first instance is never killed: memory and tasks are
measured on a process that lived through the whole run.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from chaos.cluster import Cluster, Instance
from chaos.record import FaultRecord, Recorder

KINDS = (
    "kill",  # SIGKILL an instance, start it again
    "pause",  # SIGSTOP an instance, SIGCONT it a few seconds later
    "postgres-restart",  # pg_ctl restart -m fast
    "listener-kill",  # pg_terminate_backend on the instances' LISTEN connections
    "proxy-latency",  # the proxy delays what it forwards
    "proxy-cut",  # the proxy aborts every connection to PostgreSQL
    "upstream-5xx",
    "upstream-malformed",
    "upstream-timeout",
)
INSTANCE_FAULTS = ("kill", "pause")
MAX_FAULTED_INSTANCES = 2
# What a fault acts on, where two faults must not overlap (one restart of PostgreSQL at a
# time; a listener cannot be terminated while PostgreSQL restarts).
RESOURCES = {
    "postgres-restart": "postgres",
    "listener-kill": "postgres",
    "proxy-latency": "latency",
}


class Injector:
    def __init__(
        self,
        cluster: Cluster,
        recorder: Recorder,
        rng: random.Random,
        *,
        gap: tuple[float, float],
        kinds: tuple[str, ...] = KINDS,
    ) -> None:
        self.kinds = kinds
        self.cluster = cluster
        self.recorder = recorder
        self.rng = rng
        self.gap = gap
        self.busy: set[str] = set()  # instance names, "postgres", "latency", upstream kinds
        self.active: set[asyncio.Task[None]] = set()
        self.failures: list[str] = []  # faults that could not be injected or undone

    async def run(self, seconds: float) -> None:
        """Start faults until ``seconds`` have passed; those on then run to their end."""
        deadline = time.monotonic() + seconds
        plan = list(self.kinds)
        self.rng.shuffle(plan)
        while time.monotonic() < deadline:
            if not self.kinds:
                await asyncio.sleep(deadline - time.monotonic())
                break
            if not plan:
                plan.append(self.rng.choice(self.kinds))
            claimed = next(
                ((kind, resource) for kind in plan if (resource := self._claim(kind))), None
            )
            if claimed is None:
                await asyncio.sleep(0.5)
                continue
            plan.remove(claimed[0])
            task = asyncio.create_task(self._inject(*claimed))
            self.active.add(task)
            task.add_done_callback(self.active.discard)
            await asyncio.sleep(self.rng.uniform(*self.gap))
        await self.settle()

    async def settle(self) -> None:
        await asyncio.gather(*self.active, return_exceptions=True)

    def _claim(self, kind: str) -> str | None:
        """The resource the fault will act on, now marked busy; None if none is free."""
        if kind in INSTANCE_FAULTS:
            faulted = sum(instance.name in self.busy for instance in self.cluster.instances)
            spared = self.cluster.instances[:1] if kind == "kill" else []
            free = [
                instance.name
                for instance in self.cluster.instances
                if instance.name not in self.busy and instance not in spared
            ]
            if faulted >= MAX_FAULTED_INSTANCES or not free:
                return None
            resource = self.rng.choice(free)
        else:
            resource = RESOURCES.get(kind, kind)
            if resource in self.busy:
                return None
        self.busy.add(resource)
        return resource

    async def _inject(self, kind: str, resource: str) -> None:
        action: Callable[[FaultRecord], Awaitable[None]]
        if kind in INSTANCE_FAULTS:
            target = next(i for i in self.cluster.instances if i.name == resource)
            action = self._kill(target) if kind == "kill" else self._pause(target)
        else:
            action = getattr(self, "_" + kind.replace("-", "_"))
        record = self.recorder.fault(kind, resource)
        try:
            await action(record)
        except Exception as error:
            self.failures.append(f"{kind} on {resource}: {error!r}")
            record.detail += f" (failed: {type(error).__name__})"
        finally:
            record.ended = time.time()
            self.busy.discard(resource)

    def _kill(self, instance: Instance) -> Callable[[FaultRecord], Awaitable[None]]:
        async def kill(record: FaultRecord) -> None:
            await instance.kill()
            await asyncio.sleep(self.rng.uniform(0.5, 2.0))
            await instance.start()
            record.detail = f"down {time.time() - record.started:.1f} s until ready again"

        return kill

    def _pause(self, instance: Instance) -> Callable[[FaultRecord], Awaitable[None]]:
        async def pause(record: FaultRecord) -> None:
            seconds = self.rng.uniform(1.5, 4.0)
            instance.pause()
            try:
                await asyncio.sleep(seconds)
            finally:
                instance.resume()
            record.detail = f"stopped {seconds:.1f} s"

        return pause

    async def _postgres_restart(self, record: FaultRecord) -> None:
        await self.cluster.restart_postgres()
        record.detail = f"back after {time.time() - record.started:.1f} s"

    async def _listener_kill(self, record: FaultRecord) -> None:
        assert self.cluster.proxy is not None
        pids = self.cluster.proxy.listener_pids()
        chosen = self.rng.sample(pids, self.rng.randint(1, len(pids))) if pids else []
        record.detail = f"{await self.cluster.terminate(chosen)} of {len(pids)} listeners"

    async def _proxy_latency(self, record: FaultRecord) -> None:
        assert self.cluster.proxy is not None
        latency, seconds = self.rng.uniform(0.02, 0.2), self.rng.uniform(3.0, 8.0)
        self.cluster.proxy.latency = latency
        try:
            await asyncio.sleep(seconds)
        finally:
            self.cluster.proxy.latency = 0.0
        record.detail = f"+{latency * 1000:.0f} ms each way for {seconds:.1f} s"

    async def _proxy_cut(self, record: FaultRecord) -> None:
        assert self.cluster.proxy is not None
        record.detail = f"{self.cluster.proxy.cut()} connections cut"

    async def _upstream(self, record: FaultRecord, fault: str) -> None:
        seconds = self.rng.uniform(3.0, 8.0)
        self.cluster.video.faults.add(fault)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.cluster.video.faults.discard(fault)
        record.detail = f"{seconds:.1f} s"

    async def _upstream_5xx(self, record: FaultRecord) -> None:
        await self._upstream(record, "5xx")

    async def _upstream_malformed(self, record: FaultRecord) -> None:
        await self._upstream(record, "malformed")

    async def _upstream_timeout(self, record: FaultRecord) -> None:
        await self._upstream(record, "timeout")
