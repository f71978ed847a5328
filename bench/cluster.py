"""The on-demand scenarios with several server instances on one PostgreSQL.

storm    watchers on instance A of three; A is killed (SIGKILL); the watchers reconnect,
         round-robin, to the two survivors and resubscribe. Storyline against the bare
         WebSocket floor (``bench.floor``) under the same storm.
ceiling  three Storyline instances, watchers spread over them, updateStatus at a rising
         rate until p99 delivery passes the limit; PostgreSQL's wait events sampled and
         every process's CPU read during each step.

Neither is in ``make bench``'s default list (they take long); ``python -m bench
--scenarios storm`` or ``ceiling`` runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from bench.harness import cpu_delta, cpu_of

if TYPE_CHECKING:
    from bench.harness import Child
    from bench.scenarios import Bench, Server

INSTANCES = 3
WARM_SECONDS = 2.0  # an unrecorded step at the ladder's first rate, before it
SAMPLE_SECONDS = 0.05  # pg_stat_activity sampling period during a ceiling step
# Active backends other than the sampler; a backend not waiting is on CPU.
WAITS_SQL = """
SELECT coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, 'running')
FROM pg_stat_activity
WHERE state = 'active' AND pid <> pg_backend_pid()
"""
STORM_STAGE_SQL = "UPDATE projects SET stage = $1 WHERE id = ANY($2::uuid[])"
# Statements a system's instances ran (each read is its own transaction, pings included).
COMMITTED_SQL = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"


@contextlib.asynccontextmanager
async def instances(bench: Bench, system: str, count: int = INSTANCES) -> Any:
    """``count`` servers of ``system`` on the bench's one PostgreSQL, started one by one."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(bench.server(system)) for _ in range(count)]


async def storm(bench: Bench, run: int) -> None:
    """Each system's reconnect storm: see ``storm_once``."""
    for system in bench.systems("storm", run):
        row = await storm_once(bench, system, run)
        log_storm(row)


async def storm_once(bench: Bench, system: str, run: int) -> dict[str, Any]:
    """Watchers connect to instance A, A is killed, and every watcher opens a new connection
    to a survivor (round-robin) and subscribes again, the moment A dies (a client's close
    handler, without back-off). Between the kill and the reconnect every watched project is
    changed once: a watcher holds the current state when its subscription's first event is
    that change. Reconnecting clients run in their own load processes (one per survivor),
    started before the kill."""
    from bench.scenarios import DATABASES

    assert bench.postgres is not None
    sizes = bench.sizes
    database = DATABASES[system]
    watchers = bench.wide_watchers[database][: sizes.storm_watchers]
    async with (
        instances(bench, system) as servers,
        bench.load_processes() as first,
        bench.load_processes(len(servers) - 1) as again,
    ):
        victim, *survivors = servers
        before = await bench.connect(victim, first, watchers)
        seq = bench.next_seq
        bench.next_seq += 1
        await asyncio.gather(*(w.call({"cmd": "reset", "seq_start": seq}) for w in again))
        assert victim.child is not None
        victim.child.signal(signal.SIGKILL)
        killed_ns = time.time_ns()
        await bench.postgres.fetch(
            database, STORM_STAGE_SQL, f"b{seq}:{killed_ns}", [p for p, _ in watchers]
        )
        pids = [server.pid for server in survivors if server.pid is not None]
        committed = await bench.postgres.fetch(database, COMMITTED_SQL)
        cpu_before = cpu_of(pids), cpu_of(bench.postgres.pids())
        started = time.monotonic()
        answers = await asyncio.gather(
            *(
                worker.call(
                    {
                        "cmd": "connect",
                        "kind": system,
                        "port": server.port,
                        "watchers": watchers[index :: len(survivors)],
                        "concurrency": sizes.storm_concurrency,
                    }
                )
                for index, (worker, server) in enumerate(zip(again, survivors, strict=True))
            )
        )
        seconds = time.monotonic() - started
        cpu = {
            "cpu_server": cpu_delta(cpu_before[0], cpu_of(pids)) / seconds,
            "cpu_db": cpu_delta(cpu_before[1], cpu_of(bench.postgres.pids())) / seconds,
        }
        after = bench.summary(answers)
        current = await current_state(bench, again, system, seq, watchers, killed_ns)
        # Read after the drain, by when PostgreSQL has published the reconnect's counts.
        statements = (await bench.postgres.fetch(database, COMMITTED_SQL))[0][0] - committed[0][0]
    return bench.record(
        "storm",
        system,
        run,
        watchers=len(watchers),
        instances=len(servers),
        connect=before,
        reconnect=after,
        reconnect_seconds=seconds,
        subscriptions_per_s=after["ready"] / seconds if seconds else 0.0,
        statements_per_subscription=statements / len(watchers),
        **cpu,
        **current,
    )


async def current_state(
    bench: Bench,
    workers: list[Child],
    system: str,
    seq: int,
    watchers: list[tuple[str, str]],
    killed_ns: int,
) -> dict[str, Any]:
    """How many reconnected watchers hold the change made while they were away, and when the
    last of them had it (seconds since the kill). The floor sends no state on subscribe:
    nothing to check there."""
    if system != "storyline":
        return {"current": None, "all_current_s": None, "stale": None}
    final = {project: seq for project, _ in watchers}
    drains = await asyncio.gather(
        *(
            worker.call(
                {
                    "cmd": "drain",
                    "final": final,
                    "total": 1,
                    "timeout": bench.sizes.drain_seconds,
                    "out": str(bench.work / f"storm-{index}.bin"),
                }
            )
            for index, worker in enumerate(workers)
        )
    )
    last_ns = max((drain["last_ns"] for drain in drains), default=0)
    return {
        "current": int(sum(drain["deliveries"] for drain in drains)),
        "missing": int(sum(drain["missing"] for drain in drains)),
        "stale": int(sum(drain["stale"] for drain in drains)),
        "all_current_s": (last_ns - killed_ns) / 1e9 if last_ns else None,
    }


def log_storm(row: dict[str, Any]) -> None:
    from bench.scenarios import log

    after = row["reconnect"]
    state = (
        f" current {row['current']}/{row['watchers']} all by {row['all_current_s']:.2f} s"
        if row["all_current_s"] is not None
        else ""
    )
    log(
        f"  storm {row['system']:10} W={row['watchers']:5}: first connect "
        f"{row['connect']['seconds']:.2f} s; after the kill {after['ready']} reconnected "
        f"({after['failed']} failed) in {row['reconnect_seconds']:.2f} s = "
        f"{row['subscriptions_per_s']:.0f}/s{state}; cpu survivors {row['cpu_server']:.2f} "
        f"db {row['cpu_db']:.2f}" + (f"  errors {after['errors'][:1]}" if after["errors"] else "")
    )


class WaitSampler:
    """PostgreSQL's active backends' wait events, sampled every ``SAMPLE_SECONDS`` from one
    connection of its own while a step runs: counts by ``type:event`` and the samples taken
    (count / samples = backends in that state on average)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.waits: Counter[str] = Counter()
        self.samples = 0
        self.task: asyncio.Task[None] | None = None
        self.connection: Any = None

    async def __aenter__(self) -> WaitSampler:
        import asyncpg

        self.connection = await asyncpg.connect(self.dsn)
        self.task = asyncio.create_task(self.sample())
        return self

    async def sample(self) -> None:
        while True:
            rows = await self.connection.fetch(WAITS_SQL)
            self.waits.update(row[0] for row in rows)
            self.samples += 1
            await asyncio.sleep(SAMPLE_SECONDS)

    async def __aexit__(self, *_: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.connection.close()


async def ceiling(bench: Bench, run: int) -> None:
    """Three Storyline instances, each with its share of the watchers (one project each,
    one load process per instance); updateStatus spread over the projects and over the
    instances (the pipeline's connections round-robin), at each rate of the ladder until
    p99 delivery passes ``ceiling_p99_ms``."""
    assert bench.postgres is not None
    sizes = bench.sizes
    if "storyline" not in bench.systems("ceiling", run):
        return
    watchers = bench.wide_watchers["storyline"][: sizes.ceiling_watchers]
    async with (
        instances(bench, "storyline") as servers,
        bench.load_processes(len(servers)) as workers,
    ):
        for index, (server, worker) in enumerate(zip(servers, workers, strict=True)):
            await bench.connect(server, [worker], watchers[index :: len(servers)])
        order = [project for project, _ in watchers]
        random.Random(run).shuffle(order)
        # Not recorded: the instances' first requests and queries (connections, caches).
        await bench.measure_updates(
            servers[0],
            workers,
            projects=order,
            rate=sizes.ceiling_rates[0],
            duration=WARM_SECONDS,
            per_update=1,
            ports=[server.port for server in servers],
        )
        for rate in sizes.ceiling_rates:
            row = await ceiling_step(bench, servers, workers, order, rate, run)
            log_ceiling(row)
            if not row["p99_ms"] <= sizes.ceiling_p99_ms:  # NaN (nothing delivered) stops too
                break


async def ceiling_step(
    bench: Bench,
    servers: list[Server],
    workers: list[Child],
    order: list[str],
    rate: float,
    run: int,
) -> dict[str, Any]:
    assert bench.postgres is not None
    pids = [server.pid for server in servers if server.pid is not None]
    before = {pid: cpu_of([pid]) for pid in pids}
    wall_start = time.monotonic()
    async with WaitSampler(bench.postgres.url("postgres")) as sampler:
        point = await bench.measure_updates(
            servers[0],
            workers,
            projects=order,
            rate=rate,
            duration=bench.sizes.ceiling_seconds,
            per_update=1,
            pids=pids,
            ports=[server.port for server in servers],
        )
    wall = time.monotonic() - wall_start
    return bench.record(
        "ceiling",
        "storyline",
        run,
        rate=rate,
        watchers=len(order),
        instances=len(servers),
        cpu_instances=[cpu_delta(before[pid], cpu_of([pid])) / wall for pid in pids],
        waits=dict(sampler.waits.most_common()),
        wait_samples=sampler.samples,
        **point,
    )


def log_ceiling(row: dict[str, Any]) -> None:
    from bench.scenarios import log

    samples = max(row["wait_samples"], 1)
    waits = ", ".join(f"{name} {count / samples:.2f}" for name, count in row["waits"].items())
    instances_cpu = " ".join(f"{cpu:.2f}" for cpu in row["cpu_instances"])
    log(
        f"  ceiling {row['rate']:6g}/s: sent {row['updates']} p50 {row['p50_ms']:7.1f} ms "
        f"p99 {row['p99_ms']:7.1f} ms delivered {100 * row['delivered']:5.1f}% "
        f"cpu instances {instances_cpu} db {row['cpu_db']:.2f} load {row['cpu_load']:.2f}; "
        f"pg active backends: {waits or 'none'}"
        + (f"  errors {row['errors'][:1]}" if row["errors"] else "")
    )
