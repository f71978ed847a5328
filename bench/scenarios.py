"""The scenarios, each run against Storyline and its baselines in the same invocation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jwt
import numpy as np

from bench import cluster
from bench.harness import (
    PYTHON,
    ROOT,
    Child,
    Postgres,
    code_version,
    cpu_delta,
    cpu_of,
    free_port,
    rss_of,
    wait_ready,
)
from bench.httpclient import Connection
from bench.report import PROFILE_ACCOUNT, PROFILE_GENERATE, PROFILE_HOT, PROFILE_STORM

CACHE = ROOT / "bench" / ".cache"
STORYLINE = Path(PYTHON).parent / "storyline"  # the console script, as operators run it
JWT_SECRET = "storyline-bench-secret-" + "0123456789abcdef" * 2
OWNER = "bench-owner"  # owns the hot project; its watchers are admins (any project)
# The account scenario's editors: each one WebSocket carrying these two subscriptions,
# opened in this order (the dashboard, then the project the editor opens).
ACCOUNT_FIELDS = ["accountChanges", "projectStatus"]
ACCOUNT_CREDITS = 100  # each account scenario user's balance, from one GRANT entry
WARM_SUBSCRIPTIONS = 100  # opened before the memory baseline: first-use allocations
GENERATE_USERS = 32
GENERATE_BODY = json.dumps(
    {
        "query": "mutation Generate($input: GenerateStoryInput!) "
        "{ generateStory(input: $input) { id status creditsUsed externalId version } }",
        "variables": {"input": {"prompt": "A lighthouse keeper adopts a seal", "quality": "HD"}},
    }
)
GRANT = (
    "mutation Grant($userId: ID!, $amount: Int!, $reason: String!) "
    "{ grantCredits(userId: $userId, amount: $amount, reason: $reason) { balance } }"
)

# Which database each system uses; pg-raw and the floor share one.
DATABASES = {
    "storyline": "storyline",
    "naive": "naive",
    "postgraphile": "postgraphile",
    "ws-floor": "floor",
    "pg-raw": "floor",
    "floor": "floor",
}
FANOUT_SYSTEMS = ["pg-raw", "ws-floor", "naive", "postgraphile", "storyline"]
MEMORY_SYSTEMS = ["ws-floor", "naive", "postgraphile", "storyline"]
ACCOUNT_SYSTEMS = ["storyline"]  # no other system here has accountChanges
GENERATE_SYSTEMS = ["floor", "storyline"]
SCENARIOS = ["hot", "wide", "memory", "account", "generate"]
# Run only when named (--scenarios): several instances each, and long.
ON_DEMAND = ["storm", "ceiling"]
STORM_SYSTEMS = ["ws-floor", "storyline"]

# The naive stack and PostGraphile do not use Storyline's notification trigger.
DROP_STORYLINE_TRIGGER = "DROP TRIGGER projects_notify ON projects"
POSTGRAPHILE_TRIGGER = [
    """
    CREATE FUNCTION bench_postgraphile_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- pg-pubsub's listen(topic) hears 'postgraphile:<topic>'. Its relatedNodeId is
        -- base64(JSON(__node__)): carrying the event there lets PostGraphile relay the
        -- change without a query per subscriber, its fastest configuration.
        PERFORM pg_notify('postgraphile:' || NEW.id::text, json_build_object(
            '__node__', json_build_object(
                'id', NEW.id, 'status', NEW.status, 'version', NEW.version,
                'progress', NEW.progress, 'stage', left(NEW.stage, 200),
                'error_message', left(NEW.error_message, 1000),
                'result_url', NEW.result_url, 'updated_at', NEW.updated_at))::text);
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER bench_postgraphile_notify AFTER INSERT OR UPDATE ON projects
    FOR EACH ROW EXECUTE FUNCTION bench_postgraphile_notify()
    """,
]


@dataclass
class Sizes:
    runs: int = 3
    hot_watchers: list[int] = field(default_factory=lambda: [250, 500, 1000])
    hot_rate: float = 10.0  # latency phase: updates/s to the one project
    hot_seconds: float = 4.0
    hot_capacity_rate: float = 60.0  # capacity phase: more than any server here can fan out
    hot_capacity_seconds: float = 4.0
    wide_watchers: int = 5000
    wide_rate: float = 250.0
    wide_seconds: float = 20.0  # a whole keep-alive interval: its pings fall inside
    account_users: int = 2000
    account_rate: float = 250.0
    account_seconds: float = 20.0  # a whole keep-alive interval, as wide
    memory_subscriptions: int = 5000
    storm_watchers: int = 5000
    storm_concurrency: int = 256  # handshakes in flight per reconnecting load process
    ceiling_watchers: int = 3000
    ceiling_rates: list[float] = field(default_factory=lambda: [100.0, 200.0, 400.0, 800.0])
    ceiling_seconds: float = 5.0
    ceiling_p99_ms: float = 100.0
    generate_concurrency: int = 32
    generate_seconds: float = 8.0
    generate_warmup: float = 2.0
    sweep_runs: int = 1  # runs that also measure the smaller watcher counts (the plot)
    load_processes: int = 2
    drain_seconds: float = 15.0
    connect_concurrency: int = 64


QUICK = Sizes(
    runs=1,
    hot_watchers=[20, 50, 100],
    hot_rate=10.0,
    hot_seconds=3.0,
    hot_capacity_rate=40.0,
    hot_capacity_seconds=3.0,
    wide_watchers=300,
    wide_rate=50.0,
    wide_seconds=3.0,
    account_users=200,
    account_rate=50.0,
    account_seconds=3.0,
    memory_subscriptions=300,
    storm_watchers=300,
    ceiling_watchers=300,
    ceiling_rates=[50.0, 100.0, 200.0],
    ceiling_seconds=3.0,
    generate_seconds=3.0,
    generate_warmup=1.0,
    drain_seconds=5.0,
)


def token(subject: str, role: str = "user") -> str:
    """An HS256 token as the contract defines it (sub, role), for the bench's fixed secret."""
    return jwt.encode({"sub": subject, "role": role}, JWT_SECRET, algorithm="HS256")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Server:
    system: str
    child: Child | None
    port: int

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None


def percentiles(latencies: np.ndarray[Any, Any]) -> dict[str, float]:
    """p50, p90, p99 and max of latencies (ms); NaN for none."""
    count = len(latencies)
    nan = float("nan")
    return {
        "p50_ms": float(np.percentile(latencies, 50)) if count else nan,
        "p90_ms": float(np.percentile(latencies, 90)) if count else nan,
        "p99_ms": float(np.percentile(latencies, 99)) if count else nan,
        "max_ms": float(latencies.max()) if count else nan,
    }


class Bench:
    def __init__(
        self,
        *,
        sizes: Sizes,
        scenarios: list[str],
        systems: list[str] | None,
        work: Path,
        logs: Path,
        server_log_level: str,
        profile_dir: Path | None,
    ) -> None:
        self.sizes = sizes
        self.scenarios = scenarios
        self.only = systems
        self.work = work
        self.logs = logs
        self.server_log_level = server_log_level
        self.profile_dir = profile_dir
        self.results: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {}
        self.postgres: Postgres | None = None
        self.upstream: Server | None = None
        # (project id, token) per watcher: every wide watcher is its project's owner; the
        # hot project's watchers are distinct admins (one user may hold 200 subscriptions).
        self.hot_project: dict[str, str] = {}
        self.wide_watchers: dict[str, list[tuple[str, str]]] = {}
        self.warm_watchers: dict[str, list[tuple[str, str]]] = {}
        # The account scenario's users: one project each, and a balance (Storyline only).
        self.account_watchers: list[tuple[str, str]] = []
        self.tokens: dict[str, str] = {}
        self.next_seq = 1
        self.code = "unknown"
        self.granted = False
        self.admin_token = ""
        self.pipeline_token = token("bench-pipeline", "pipeline")
        self.user_tokens = [token(f"bench-user-{index}") for index in range(GENERATE_USERS)]

    # -- which systems -------------------------------------------------------------------

    def systems(self, scenario: str, run: int) -> list[str]:
        pool = {
            "hot": FANOUT_SYSTEMS,
            "wide": FANOUT_SYSTEMS,
            "memory": MEMORY_SYSTEMS,
            "account": ACCOUNT_SYSTEMS,
            "generate": GENERATE_SYSTEMS,
            "storm": STORM_SYSTEMS,
            "ceiling": ["storyline"],
        }[scenario]
        chosen = [system for system in pool if self.only is None or system in self.only]
        # Rotate the order from run to run, so that drift on the machine spreads evenly.
        shift = run % len(chosen) if chosen else 0
        return chosen[shift:] + chosen[:shift]

    def needed_systems(self) -> set[str]:
        return {system for scenario in self.scenarios for system in self.systems(scenario, 0)}

    # -- set-up --------------------------------------------------------------------------

    async def setup(self) -> None:
        self.postgres = Postgres(self.work / "pg")
        self.meta["postgres"] = await self.postgres.version()
        needed = self.needed_systems()
        databases = sorted({DATABASES[system] for system in needed})
        log(f"databases: {', '.join(databases)}")
        sizes = self.sizes
        seeds = max(
            sizes.wide_watchers,
            sizes.memory_subscriptions,
            sizes.storm_watchers if "storm" in self.scenarios else 0,
            sizes.ceiling_watchers if "ceiling" in self.scenarios else 0,
        )
        for database in databases:
            await self.postgres.create(database)
            if database == "naive":
                await self.postgres.execute(database, DROP_STORYLINE_TRIGGER)
            elif database == "postgraphile":
                await self.postgres.execute(database, DROP_STORYLINE_TRIGGER, *POSTGRAPHILE_TRIGGER)
            if database == "floor":
                await self.postgres.fetch(
                    database,
                    "INSERT INTO accounts (user_id, balance) "
                    "SELECT 'bench-user-' || g, 1000000000 FROM generate_series(0, $1 - 1) g",
                    GENERATE_USERS,
                )
            self.hot_project[database] = (await self.seed(database, [OWNER]))[0][0]
            warm = [f"bench-warm-{index}" for index in range(WARM_SUBSCRIPTIONS)]
            self.warm_watchers[database] = await self.seed(database, warm)
            wide = [f"bench-watcher-{index}" for index in range(seeds)]
            self.wide_watchers[database] = await self.seed(database, wide)
            if database == "storyline" and "account" in self.scenarios:
                users = [f"bench-editor-{index}" for index in range(self.sizes.account_users)]
                self.account_watchers = await self.seed(database, users, ACCOUNT_CREDITS)
        if "postgraphile" in needed:
            try:
                await self.install_postgraphile()
            except (OSError, RuntimeError) as failure:
                # Everything else still runs; the report shows PostGraphile's rows missing.
                log(f"PostGraphile unavailable, skipped: {failure}")
                self.only = [system for system in DATABASES if system != "postgraphile"]
        if "generate" in self.scenarios:
            port = free_port()
            child = await Child(
                "upstream",
                [PYTHON, "-m", "bench.upstream", "--port", str(port)],
                log=self.logs / "upstream.log",
            ).start()
            await wait_ready(child, port, "/healthz")
            self.upstream = Server("upstream", child, port)
            # The brief's way to get an admin token: the CLI, with the server's secret.
            self.admin_token = await self.admin()

    async def admin(self) -> str:
        """An admin token the way an operator gets one: ``storyline token``."""
        process = await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            "storyline.cli",
            "token",
            "bench-admin",
            "--role",
            "admin",
            env={**os.environ, **self.storyline_env(), "STORYLINE_LOG_LEVEL": "WARNING"},
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError("`storyline token` failed")
        return output.decode().strip()

    async def seed(
        self, database: str, owners: list[str], credits: int = 0
    ) -> list[tuple[str, str]]:
        """One PROCESSING project per owner, and ``credits`` granted by one ledger entry
        if not 0; (project id, the owner's token) each."""
        assert self.postgres is not None
        rows = await self.postgres.fetch(
            database,
            """
            WITH owners AS (
                INSERT INTO accounts (user_id, balance) SELECT unnest($1::text[]), $2::int
                RETURNING user_id
            ), granted AS (
                INSERT INTO ledger (user_id, kind, amount, balance_after, reason)
                SELECT user_id, 'GRANT', $2::int, $2::int, 'sign-up credits' FROM owners
                WHERE $2::int > 0
            )
            INSERT INTO projects (id, user_id, status, credits_used, prompt, quality,
                aspect_ratio, image_model, request_fingerprint)
            SELECT gen_random_uuid(), user_id, 'PROCESSING', 60, 'bench', 'HD',
                'LANDSCAPE_16_9', 'comfyui/flux', 'bench' FROM owners
            RETURNING id::text, user_id
            """,
            owners,
            credits,
        )
        by_owner = {row[1]: row[0] for row in rows}
        for owner in owners:
            if owner not in self.tokens:
                self.tokens[owner] = token(owner)
        return [(by_owner[owner], self.tokens[owner]) for owner in owners]

    def hot_watchers(self, database: str, first: int, last: int) -> list[tuple[str, str]]:
        project = self.hot_project[database]
        return [(project, self.observer(index)) for index in range(first, last)]

    def observer(self, index: int) -> str:
        name = f"bench-observer-{index}"
        if name not in self.tokens:
            self.tokens[name] = token(name, "admin")
        return self.tokens[name]

    async def install_postgraphile(self) -> None:
        target = CACHE / "postgraphile"
        target.mkdir(parents=True, exist_ok=True)
        source = ROOT / "bench" / "postgraphile"
        wanted = (source / "package.json").read_text()
        installed = target / "package.json"
        if not (
            (target / "node_modules" / "postgraphile").exists()
            and installed.exists()
            and installed.read_text() == wanted
        ):
            installed.write_text(wanted)
            log("installing PostGraphile and @graphile/pg-pubsub with npm")
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError("npm is needed for the PostGraphile baseline")
            child = await Child(
                "npm",
                [
                    npm,
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--prefix",
                    str(target),
                ],
                log=self.logs / "npm.log",
            ).start()
            assert child.process is not None
            if await child.process.wait() != 0:
                raise RuntimeError(f"npm install failed; see {child.log}")
            await child.stop()
        shutil.copyfile(source / "server.js", target / "server.js")
        version = json.loads(
            (target / "node_modules" / "postgraphile" / "package.json").read_text()
        )["version"]
        pubsub = json.loads(
            (target / "node_modules" / "@graphile" / "pg-pubsub" / "package.json").read_text()
        )["version"]
        self.meta["postgraphile"] = f"postgraphile {version}, @graphile/pg-pubsub {pubsub}"

    def storyline_env(self) -> dict[str, str]:
        assert self.postgres is not None
        env = {
            "STORYLINE_DATABASE_URL": self.postgres.url("storyline"),
            "STORYLINE_JWT_SECRET": JWT_SECRET,
            "STORYLINE_DATA_DIR": str(self.work / "storyline-data"),
            "STORYLINE_LOG_LEVEL": self.server_log_level.upper(),
        }
        if self.upstream is not None:
            env["STORYLINE_UPSTREAM_URL"] = f"http://127.0.0.1:{self.upstream.port}"
        return env

    async def teardown(self) -> None:
        await Child.stop_all()
        if self.postgres is not None:
            self.postgres.cleanup()

    # -- servers and load processes --------------------------------------------------------

    @contextlib.asynccontextmanager
    async def server(self, system: str, *, profile: Path | None = None) -> AsyncIterator[Server]:
        assert self.postgres is not None
        port = free_port()
        database = DATABASES[system]
        logfile = self.logs / f"{system}.log"
        level = self.server_log_level.lower()
        upstream = f"http://127.0.0.1:{self.upstream.port if self.upstream else 9}"
        method, path, body = "GET", "/healthz", b""
        env: dict[str, str] = {}
        if system == "pg-raw":
            yield Server(system, None, 0)
            return
        if system == "storyline":
            # Others may commit while the bench runs: note the code each server started from.
            self.code = code_version()
            # `serve` applies pending migrations first: the schema follows the code under test.
            serve = ["serve", "--host", "127.0.0.1", "--port", str(port)]
            if profile is not None:
                argv = [PYTHON, "-m", "bench.profiled", "--out", str(profile), "--", *serve]
            elif STORYLINE.exists():
                argv = [str(STORYLINE), *serve]
            else:
                argv = [PYTHON, "-m", "storyline.cli", *serve]
            env = self.storyline_env()
            path = "/readyz"
        elif system == "naive":
            argv = [PYTHON, "-m", "bench.naive", "--port", str(port)]
            argv += ["--database-url", self.postgres.url(database), "--jwt-secret", JWT_SECRET]
            argv += ["--log-level", level]
        elif system in ("ws-floor", "floor"):
            argv = [PYTHON, "-m", "bench.floor", "--port", str(port)]
            argv += ["--database-url", self.postgres.url(database), "--jwt-secret", JWT_SECRET]
            argv += ["--upstream-url", upstream, "--log-level", level]
        elif system == "postgraphile":
            node = shutil.which("node") or "node"
            script = str(CACHE / "postgraphile" / "server.js")
            argv = [node, script, str(port), self.postgres.node_url(database)]
            env = {"NODE_ENV": "production"}
            method, path, body = "POST", "/graphql", b'{"query":"{__typename}"}'
        else:
            raise ValueError(system)
        child = await Child(system, argv, log=logfile, env=env).start()
        try:
            await wait_ready(child, port, path, method=method, body=body)
            yield Server(system, child, port)
        finally:
            await child.stop()

    @contextlib.asynccontextmanager
    async def load_processes(self, count: int | None = None) -> AsyncIterator[list[Child]]:
        """``count`` load processes (default: the sizes' ``load_processes``)."""
        children = [
            Child(
                f"load-{index}",
                [PYTHON, "-m", "bench.load"],
                log=self.logs / "load.log",
                pipes=True,
            )
            for index in range(self.sizes.load_processes if count is None else count)
        ]
        try:
            for child in children:
                await child.start()
            yield children
        finally:
            for child in children:
                with contextlib.suppress(Exception):
                    if child.alive():
                        await child.call({"cmd": "close"}, limit=30)
                await child.stop()

    async def connect(
        self,
        server: Server,
        workers: list[Child],
        watchers: list[tuple[str, str]],
        fields: list[str] | None = None,
    ) -> dict[str, Any]:
        """Open the watchers (spread over the load processes), each one connection with the
        subscriptions ``fields`` (default: projectStatus); wait until the server is idle."""
        system = server.system
        if system == "pg-raw":
            assert self.postgres is not None
            answers = await asyncio.gather(
                *(
                    worker.call(
                        {
                            "cmd": "connect",
                            "kind": "pg-raw",
                            "dsn": self.postgres.url("floor"),
                            "listeners": 1,
                        }
                    )
                    for worker in workers
                )
            )
        else:
            shares = [watchers[index :: len(workers)] for index in range(len(workers))]
            answers = await asyncio.gather(
                *(
                    worker.call(
                        {
                            "cmd": "connect",
                            "kind": system,
                            "port": server.port,
                            "watchers": share,
                            "fields": fields,
                            "concurrency": self.sizes.connect_concurrency,
                        }
                    )
                    for worker, share in zip(workers, shares, strict=True)
                    if share
                )
            )
        await self.quiesce(server)
        summary = self.summary(answers)
        if summary["failed"]:
            log(f"  {system}: {summary['failed']} watchers could not subscribe")
        return summary

    async def subscribe(
        self, server: Server, workers: list[Child], fields: list[str]
    ) -> dict[str, Any]:
        """Add the subscriptions ``fields`` on every open watcher's connection; wait until
        the server is idle."""
        command: dict[str, Any] = {
            "cmd": "subscribe",
            "fields": fields,
            "concurrency": self.sizes.connect_concurrency,
        }
        answers = await asyncio.gather(*(worker.call(command) for worker in workers))
        await self.quiesce(server)
        return self.summary(answers)

    @staticmethod
    def summary(answers: list[dict[str, Any]]) -> dict[str, Any]:
        """The load processes' answers to connect or subscribe, summed up."""
        return {
            "ready": sum(answer["ready"] for answer in answers),
            "failed": sum(answer["failed"] for answer in answers),
            "seconds": max(answer["seconds"] for answer in answers),
            "retries": sum(answer.get("retries", 0) for answer in answers),
            "error_count": sum(answer.get("error_count", 0) for answer in answers),
            "errors": [error for answer in answers for error in answer.get("errors", [])][:3],
        }

    async def quiesce(self, server: Server, limit: float = 20.0) -> None:
        """Wait until the server is idle: subscriptions registered, start-up work done."""
        if server.pid is None:
            await asyncio.sleep(0.5)
            return
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = cpu_of([server.pid])
            await asyncio.sleep(0.25)
            if cpu_delta(before, cpu_of([server.pid])) < 0.25 * 0.05:
                break
        await asyncio.sleep(0.3)

    def server_pids(self, server: Server) -> list[int]:
        return [server.pid] if server.pid is not None else []

    # -- measurements ----------------------------------------------------------------------

    async def measure_updates(
        self,
        server: Server,
        workers: list[Child],
        *,
        projects: list[str],
        rate: float,
        duration: float,
        per_update: int,
        streams: list[str] | None = None,
        pids: list[int] | None = None,
        ports: list[int] | None = None,
    ) -> dict[str, Any]:
        """Send updates at ``rate`` for ``duration`` (to ``server``); collect every delivery's
        latency. ``streams``: the subscriptions each watcher carries (``connect``'s fields),
        whose deliveries are also summed up one by one under ``by_field``. ``pids``: the
        server processes whose CPU is ``cpu_server`` (default: ``server``'s); ``ports``: the
        instances whose ``updateStatus`` the pipeline spreads its connections over (default:
        ``server``'s)."""
        assert self.postgres is not None
        system = server.system
        seq_start = self.next_seq
        await asyncio.gather(*(w.call({"cmd": "reset", "seq_start": seq_start}) for w in workers))
        command: dict[str, Any] = {
            "cmd": "updates",
            "projects": projects,
            "rate": rate,
            "duration": duration,
            "seq_start": seq_start,
            "concurrency": 32,
        }
        if system in ("storyline", "naive"):
            command |= {
                "via": "graphql",
                "port": server.port,
                "ports": ports or [server.port],
                "token": self.pipeline_token,
            }
        else:
            command |= {"via": "sql", "dsn": self.postgres.url(DATABASES[system])}
        driver = await self.start_driver(command)
        try:
            pids = self.server_pids(server) if pids is None else pids
            db_before, server_before = cpu_of(self.postgres.pids()), cpu_of(pids)
            wall_start = time.monotonic()
            sent = await driver.read()
            self.next_seq = seq_start + sent["sent"] + 1
            outputs = [self.work / f"latency-{index}.bin" for index in range(len(workers))]
            drains = await asyncio.gather(
                *(
                    worker.call(
                        {
                            "cmd": "drain",
                            "final": sent["final"],
                            "total": sent["sent"] - sent["error_count"],
                            "timeout": self.sizes.drain_seconds,
                            "out": str(out),
                        }
                    )
                    for worker, out in zip(workers, outputs, strict=True)
                )
            )
            wall = time.monotonic() - wall_start
            server_cpu = cpu_delta(server_before, cpu_of(pids))
            db_cpu = cpu_delta(db_before, cpu_of(self.postgres.pids()))
        finally:
            await driver.stop()
        latencies = np.concatenate([np.fromfile(out, dtype=np.int64) for out in outputs]) / 1000.0
        kinds = np.concatenate([np.fromfile(f"{out}.streams", dtype=np.uint8) for out in outputs])
        deliveries = int(sum(drain["deliveries"] for drain in drains))
        duplicated: Counter[int] = Counter()  # by subscription (stream) of a watcher
        for drain in drains:
            duplicated.update(dict(enumerate(drain.get("duplicates", []))))
        duplicates = sum(duplicated.values())
        last_ns = max((drain["last_ns"] for drain in drains), default=0)
        window = max((last_ns - sent["first_send_ns"]) / 1e9, sent["seconds"], 1e-3)
        offered = (sent["sent"] - sent["error_count"]) * per_update
        errors = [*sent["errors"], *(e for drain in drains for e in drain["errors"])]
        by_field: dict[str, dict[str, Any]] = {}
        fields = streams or []
        for index, name in enumerate(fields):
            mine = latencies[kinds == index]
            wanted = offered // len(fields)  # every watcher carries each field once
            by_field[name] = {
                "deliveries": len(mine),
                "duplicates": duplicated[index],
                "lost": max(0, wanted - (len(mine) - duplicated[index])),
                **percentiles(mine),
            }
        return {
            "updates": sent["sent"],
            "unsent": sent["unsent"],
            "update_errors": sent["error_count"],
            "late_sends": sent["late"],
            "response_ms": sent["response_ms"],
            "deliveries": deliveries,
            "offered": offered,
            "delivered": deliveries / offered if offered else 0.0,
            "deliveries_per_s": deliveries / window,
            "window_s": window,
            **percentiles(latencies),
            "duplicates": duplicates,
            # Deliveries offered that never came (the contract lets a lagging client skip
            # to the newest state; the final one is counted by ``missing``).
            "lost": max(0, offered - (deliveries - duplicates)),
            "by_field": by_field,
            "missing": int(sum(drain["missing"] for drain in drains)),
            "stale": int(sum(drain["stale"] for drain in drains)),
            "per_watcher": [
                min(drain["per_watcher"][0] for drain in drains),
                max(drain["per_watcher"][1] for drain in drains),
            ],
            "dropped": int(sum(drain["dropped"] for drain in drains)),
            "client_errors": int(sum(drain["error_count"] for drain in drains)),
            "errors": errors[:5],
            "cpu_server": server_cpu / wall,
            "cpu_db": db_cpu / wall,
            "cpu_load": (sum(drain["cpu"] for drain in drains) + sent["cpu"]) / wall,
        }

    def record(self, scenario: str, system: str, run: int, **values: Any) -> dict[str, Any]:
        row = {"scenario": scenario, "system": system, "run": run, **values}
        if system == "storyline":
            row["code"] = self.code
        self.results.append(row)
        return row

    # -- scenarios -----------------------------------------------------------------------

    async def hot(self, run: int) -> None:
        sizes = self.sizes
        for system in self.systems("hot", run):
            database = DATABASES[system]
            project = self.hot_project[database]
            async with self.server(system) as server, self.load_processes() as workers:
                connected = 0
                sweep = run < sizes.sweep_runs and system != "pg-raw"
                points = sizes.hot_watchers if sweep else sizes.hot_watchers[-1:]
                for watchers in points:
                    if system == "pg-raw":
                        connection = await self.connect(server, workers, [])
                        per_update = len(workers)
                    else:
                        connection = await self.connect(
                            server, workers, self.hot_watchers(database, connected, watchers)
                        )
                        connected = watchers
                        per_update = watchers
                    point = await self.measure_updates(
                        server,
                        workers,
                        projects=[project],
                        rate=sizes.hot_rate,
                        duration=sizes.hot_seconds,
                        per_update=per_update,
                    )
                    self.hot_row("latency", system, run, watchers, connection, point)
                if system == "pg-raw":
                    continue
                # Capacity: offer more than the server can fan out; what it delivers per
                # second is its capacity (a server may collapse intermediate states).
                point = await self.measure_updates(
                    server,
                    workers,
                    projects=[project],
                    rate=sizes.hot_capacity_rate,
                    duration=sizes.hot_capacity_seconds,
                    per_update=connected,
                )
                self.hot_row("capacity", system, run, connected, {}, point)

    def hot_row(
        self,
        phase: str,
        system: str,
        run: int,
        watchers: int,
        connection: dict[str, Any],
        point: dict[str, Any],
    ) -> None:
        row = self.record(
            "hot", system, run, phase=phase, watchers=watchers, connect=connection, **point
        )
        log(
            f"  hot/{phase:8} {system:12} W={watchers:5}: {row['deliveries_per_s']:7.0f} del/s "
            f"({100 * row['delivered']:5.1f}%) p50 {row['p50_ms']:7.1f} ms "
            f"p99 {row['p99_ms']:7.1f} ms  cpu srv {row['cpu_server']:.2f} "
            f"load {row['cpu_load']:.2f} db {row['cpu_db']:.2f}"
            + (f"  errors {row['errors'][:1]}" if row["errors"] else "")
        )

    async def wide_and_memory(self, run: int) -> None:
        sizes = self.sizes
        want_wide = "wide" in self.scenarios
        want_memory = "memory" in self.scenarios
        # Memory is read while the wide scenario's subscriptions open, when the sizes agree.
        for system in self.systems("wide" if want_wide else "memory", run):
            database = DATABASES[system]
            memory_here = want_memory and system in MEMORY_SYSTEMS
            shared = want_wide and sizes.memory_subscriptions == sizes.wide_watchers
            if memory_here and not shared:
                await self.memory(run, system)
                memory_here = False
            if not want_wide:
                continue
            watchers = self.wide_watchers[database][: sizes.wide_watchers]
            async with self.server(system) as server, self.load_processes() as workers:
                if memory_here:
                    await self.memory_on(run, server, workers, watchers)
                else:
                    await self.connect(server, workers, watchers)
                order = [project for project, _ in watchers]
                random.Random(run).shuffle(order)
                point = await self.measure_updates(
                    server,
                    workers,
                    projects=order,
                    rate=sizes.wide_rate,
                    duration=sizes.wide_seconds,
                    per_update=1 if system != "pg-raw" else len(workers),
                )
                row = self.record("wide", system, run, watchers=len(watchers), **point)
                log(
                    f"  wide {system:12} W={len(watchers):5}: p50 {row['p50_ms']:7.1f} ms "
                    f"p99 {row['p99_ms']:7.1f} ms delivered {100 * row['delivered']:5.1f}% "
                    f"cpu srv {row['cpu_server']:.2f} load {row['cpu_load']:.2f} "
                    f"db {row['cpu_db']:.2f}"
                    + (f"  errors {row['errors'][:1]}" if row["errors"] else "")
                )

    async def memory(self, run: int, system: str) -> None:
        watchers = self.wide_watchers[DATABASES[system]][: self.sizes.memory_subscriptions]
        async with self.server(system) as server, self.load_processes() as workers:
            await self.memory_on(run, server, workers, watchers)

    async def memory_on(
        self,
        run: int,
        server: Server,
        workers: list[Child],
        watchers: list[tuple[str, str]],
        field: str = "projectStatus",
    ) -> dict[str, Any]:
        """RSS per subscription, as ``watchers`` subscribe after 100 warm-up ones: each one
        connection with one ``field`` subscription (accountChanges: to the watcher's own
        account). The watchers' connection summary."""
        assert server.pid is not None
        warm = self.warm_watchers[DATABASES[server.system]]
        await self.connect(server, workers, warm, [field])
        before = rss_of(server.pid)
        connection = await self.connect(server, workers, watchers, [field])
        await asyncio.sleep(1.0)
        after = rss_of(server.pid)
        count = max(connection["ready"], 1)
        row = self.record(
            "memory",
            server.system,
            run,
            field=field,
            subscriptions=connection["ready"],
            failed=connection["failed"],
            rss_before_mb=before / 2**20,
            rss_after_mb=after / 2**20,
            kb_per_subscription=(after - before) / count / 1024,
            connect_seconds=connection["seconds"],
        )
        log(
            f"  memory {server.system:12} {field:14} N={connection['ready']:5}: "
            f"{row['kb_per_subscription']:6.1f} KB/subscription "
            f"(RSS {row['rss_before_mb']:.0f} -> {row['rss_after_mb']:.0f} MB)"
        )
        return connection

    async def account(self, run: int) -> None:
        """The editors' dashboard: each user one connection carrying accountChanges and
        projectStatus on their one project; progress reports spread over the projects.
        The memory per idle accountChanges is read as those connections open, before
        their projectStatus subscriptions are added."""
        sizes = self.sizes
        for system in self.systems("account", run):
            watchers = self.account_watchers[: sizes.account_users]
            async with self.server(system) as server, self.load_processes() as workers:
                connection, added = await self.open_dashboards(server, workers, run)
                point = await self.dashboard_updates(server, workers, run, sizes.account_seconds)
            row = self.record(
                "account",
                system,
                run,
                users=len(watchers),
                connect=connection,
                subscribe=added,
                **point,
            )
            fields = " ".join(
                f"{name} p50 {each['p50_ms']:.1f} p99 {each['p99_ms']:.1f} lost {each['lost']}"
                for name, each in row["by_field"].items()
            )
            log(
                f"  account {system:10} U={len(watchers):5}: p50 {row['p50_ms']:7.1f} ms "
                f"p99 {row['p99_ms']:7.1f} ms ({fields}) missing {row['missing']} "
                f"cpu srv {row['cpu_server']:.2f} load {row['cpu_load']:.2f} "
                f"db {row['cpu_db']:.2f} connect {connection['seconds']:.1f} s "
                f"+ {added['seconds']:.1f} s"
                + (f"  errors {row['errors'][:1]}" if row["errors"] else "")
            )

    async def open_dashboards(
        self, server: Server, workers: list[Child], run: int | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The account users' connections with accountChanges (with ``run``: recording the
        memory per idle one as they open), then projectStatus added to each; both summaries."""
        dashboard, *opened = ACCOUNT_FIELDS
        watchers = self.account_watchers[: self.sizes.account_users]
        if run is None:
            connection = await self.connect(server, workers, watchers, [dashboard])
        else:
            connection = await self.memory_on(run, server, workers, watchers, dashboard)
        added = await self.subscribe(server, workers, opened)
        if added["failed"]:
            log(f"  {server.system}: {added['failed']} watchers could not add {opened}")
        return connection, added

    async def dashboard_updates(
        self, server: Server, workers: list[Child], run: int, duration: float
    ) -> dict[str, Any]:
        """Progress reports round-robin over the account users' projects (shuffled)."""
        order = [project for project, _ in self.account_watchers[: self.sizes.account_users]]
        random.Random(run).shuffle(order)
        return await self.measure_updates(
            server,
            workers,
            projects=order,
            rate=self.sizes.account_rate,
            duration=duration,
            per_update=len(ACCOUNT_FIELDS),
            streams=ACCOUNT_FIELDS,
        )

    async def generate(self, run: int) -> None:
        sizes = self.sizes
        for system in self.systems("generate", run):
            async with self.server(system) as server:
                result, cpu = await self.drive_generate(server)
            row = self.record(
                "generate",
                system,
                run,
                concurrency=sizes.generate_concurrency,
                throughput=result["throughput"],
                completed=result["completed"],
                p50_ms=result["latency_ms"]["p50"],
                p99_ms=result["latency_ms"]["p99"],
                error_count=result["error_count"],
                errors=result["errors"],
                **cpu,
            )
            log(
                f"  generate {system:10}: {row['throughput']:6.0f}/s p50 {row['p50_ms']:6.1f} ms "
                f"p99 {row['p99_ms']:6.1f} ms cpu srv {row['cpu_server']:.2f} "
                f"db {row['cpu_db']:.2f} load {row['cpu_load']:.2f}"
                + (f"  errors {row['error_count']}: {row['errors'][:1]}" if row["errors"] else "")
            )

    async def start_driver(self, command: dict[str, Any]) -> Child:
        """A driver process given ``command``, once it says it is measuring."""
        driver = await Child(
            "driver", [PYTHON, "-m", "bench.driver"], log=self.logs / "driver.log", pipes=True
        ).start()
        try:
            started = await driver.call(command)
            assert started.get("event") == "measuring", started
        except BaseException:
            await driver.stop()
            raise
        return driver

    async def drive_generate(
        self, server: Server, *, profiling: bool = False
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """One generateStory load pass against ``server``: the driver's result and the CPU
        (cores) of server, upstream, database and load over the measured window. With
        ``profiling``, the server's profiler samples exactly that window."""
        assert self.postgres is not None
        assert self.upstream is not None
        sizes = self.sizes
        storyline = server.system == "storyline"
        if storyline and not self.granted:
            await self.grant(server)
        command = {
            "cmd": "generate",
            "port": server.port,
            "path": "/graphql" if storyline else "/generate",
            "tokens": self.user_tokens,
            "concurrency": sizes.generate_concurrency,
            "duration": sizes.generate_seconds,
            "warmup": sizes.generate_warmup,
            "body": GENERATE_BODY,
        }
        driver = await self.start_driver(command)
        try:
            if profiling:
                assert server.child is not None
                server.child.signal(signal.SIGUSR1)
            pids = self.server_pids(server)
            upstream = self.server_pids(self.upstream)
            before = cpu_of(pids), cpu_of(upstream), cpu_of(self.postgres.pids())
            wall_start = time.monotonic()
            result = await driver.read()
            wall = time.monotonic() - wall_start
            after = cpu_of(pids), cpu_of(upstream), cpu_of(self.postgres.pids())
            if profiling:
                assert server.child is not None
                server.child.signal(signal.SIGUSR2)
        finally:
            await driver.stop()
        cpu = {
            "cpu_server": cpu_delta(before[0], after[0]) / wall,
            "cpu_upstream": cpu_delta(before[1], after[1]) / wall,
            "cpu_db": cpu_delta(before[2], after[2]) / wall,
            "cpu_load": result["cpu"] / wall,
        }
        return result, cpu

    async def grant(self, server: Server) -> None:
        connection = Connection("127.0.0.1", server.port)
        try:
            for index in range(GENERATE_USERS):
                body = json.dumps(
                    {
                        "query": GRANT,
                        "variables": {
                            "userId": f"bench-user-{index}",
                            "amount": 1_000_000_000,
                            "reason": "benchmark",
                        },
                    }
                ).encode()
                status, payload = await connection.post(
                    "/graphql", body, {"Authorization": f"Bearer {self.admin_token}"}
                )
                if status != 200 or b'"errors"' in payload:
                    raise RuntimeError(f"grantCredits failed: {status} {payload[:300]!r}")
        finally:
            await connection.close()
        self.granted = True

    async def profile(self) -> dict[str, Any] | None:
        """One more hot fan-out pass with Storyline under pyinstrument (not in the tables)."""
        if self.profile_dir is None:
            return None
        sizes = self.sizes
        watchers = sizes.hot_watchers[-1]
        raw = self.work / "profile-hot.txt"
        project = self.hot_project["storyline"]
        async with (
            self.server("storyline", profile=raw) as server,
            self.load_processes() as workers,
        ):
            assert server.child is not None
            await self.connect(server, workers, self.hot_watchers("storyline", 0, watchers))
            server.child.signal(signal.SIGUSR1)
            point = await self.measure_updates(
                server,
                workers,
                projects=[project],
                rate=sizes.hot_rate,
                duration=max(sizes.hot_seconds, 8.0),
                per_update=watchers,
            )
            server.child.signal(signal.SIGUSR2)
            await self.await_report(raw)
        self.write_profile(
            raw,
            PROFILE_HOT,
            f"Storyline (code {self.code}) during hot fan-out: {watchers} watchers of one "
            f"project, {sizes.hot_rate:g} updateStatus/s for {max(sizes.hot_seconds, 8.0):g} s.\n"
            f"Under the profiler: {point['deliveries_per_s']:.0f} deliveries/s, "
            f"p50 {point['p50_ms']:.1f} ms, p99 {point['p99_ms']:.1f} ms",
        )
        return point

    async def profile_account(self) -> None:
        """One more dashboard pass with Storyline under pyinstrument (not in the tables)."""
        if self.profile_dir is None:
            return
        sizes = self.sizes
        seconds = max(sizes.account_seconds / 2, 8.0)
        raw = self.work / "profile-account.txt"
        async with (
            self.server("storyline", profile=raw) as server,
            self.load_processes() as workers,
        ):
            assert server.child is not None
            await self.open_dashboards(server, workers, None)
            server.child.signal(signal.SIGUSR1)
            point = await self.dashboard_updates(server, workers, sizes.runs, seconds)
            server.child.signal(signal.SIGUSR2)
            await self.await_report(raw)
        self.write_profile(
            raw,
            PROFILE_ACCOUNT,
            f"Storyline (code {self.code}) on the editors' dashboard: {sizes.account_users} "
            f"users, each one connection with accountChanges and projectStatus, "
            f"{sizes.account_rate:g} updateStatus/s spread over their projects for {seconds:g} s."
            f"\nUnder the profiler: p50 {point['p50_ms']:.1f} ms, p99 {point['p99_ms']:.1f} ms "
            f"(updateStatus answered in p50 {point['response_ms']['p50']:.1f} ms, "
            f"p99 {point['response_ms']['p99']:.1f} ms)",
        )

    async def profile_generate(self) -> None:
        """One more generateStory pass with Storyline under pyinstrument (not in the tables)."""
        if self.profile_dir is None:
            return
        raw = self.work / "profile-generate.txt"
        async with self.server("storyline", profile=raw) as server:
            result, cpu = await self.drive_generate(server, profiling=True)
            await self.await_report(raw)
        self.write_profile(
            raw,
            PROFILE_GENERATE,
            f"Storyline (code {self.code}) during generateStory: "
            f"{self.sizes.generate_concurrency} concurrent clients, zero-latency upstream, "
            f"{self.sizes.generate_seconds:g} s.\n"
            f"Under the profiler: {result['throughput']:.0f}/s, "
            f"p50 {result['latency_ms']['p50']:.1f} ms, p99 {result['latency_ms']['p99']:.1f} ms, "
            f"server CPU {cpu['cpu_server']:.2f} cores",
        )

    async def profile_storm(self) -> None:
        """Storyline under pyinstrument while the storm's watchers subscribe to one instance:
        what a subscription costs from the handshake to its first event (not in the tables)."""
        if self.profile_dir is None:
            return
        watchers = self.wide_watchers["storyline"][: self.sizes.storm_watchers]
        raw = self.work / "profile-storm.txt"
        async with (
            self.server("storyline", profile=raw) as server,
            self.load_processes() as workers,
        ):
            assert server.child is not None
            server.child.signal(signal.SIGUSR1)
            answer = await self.connect(server, workers, watchers)
            server.child.signal(signal.SIGUSR2)
            await self.await_report(raw)
        self.write_profile(
            raw,
            PROFILE_STORM,
            f"Storyline (code {self.code}) while {len(watchers)} watchers open a connection "
            f"and a projectStatus subscription each, up to {self.sizes.connect_concurrency} "
            f"handshakes in flight per load process.\n"
            f"Under the profiler: {answer['ready']} ready in {answer['seconds']:.2f} s",
        )

    @staticmethod
    async def await_report(raw: Path) -> None:
        for _ in range(300):  # the report is written on SIGUSR2; give it a minute
            if await asyncio.to_thread(raw.exists):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)

    def write_profile(self, raw: Path, name: str, header: str) -> None:
        if not raw.exists():
            log(f"the profiler wrote no report for {name}")
            return
        assert self.profile_dir is not None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        (self.profile_dir / name).write_text(
            header + " (profiling slows the server; these numbers are not the benchmark's).\n"
            "Generated by `make bench`; times are shares of the sampled window.\n\n"
            + raw.read_text()
        )

    # -- everything ------------------------------------------------------------------------

    async def run(self) -> None:
        for run in range(self.sizes.runs):
            log(f"run {run + 1}/{self.sizes.runs} (code {code_version()})")
            if "hot" in self.scenarios:
                await self.hot(run)
            if "wide" in self.scenarios or "memory" in self.scenarios:
                await self.wide_and_memory(run)
            if "account" in self.scenarios:
                await self.account(run)
            if "generate" in self.scenarios:
                await self.generate(run)
            if "storm" in self.scenarios:
                await cluster.storm(self, run)
            if "ceiling" in self.scenarios:
                await cluster.ceiling(self, run)
        if "hot" in self.scenarios and (self.only is None or "storyline" in self.only):
            log("profiling Storyline during hot fan-out")
            await self.profile()
        if "account" in self.scenarios and (self.only is None or "storyline" in self.only):
            log("profiling Storyline on the editors' dashboard")
            await self.profile_account()
        if "generate" in self.scenarios and (self.only is None or "storyline" in self.only):
            log("profiling Storyline during generateStory")
            await self.profile_generate()
        if "storm" in self.scenarios and (self.only is None or "storyline" in self.only):
            log("profiling Storyline while watchers subscribe")
            await self.profile_storm()

    def sizes_dict(self) -> dict[str, Any]:
        return asdict(self.sizes)
