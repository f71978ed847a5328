"""What the harness runs: its own PostgreSQL (bench's embedded one), the proxy in front of
it, the video service in the harness's loop, the ``storyline serve`` instances, which
reach PostgreSQL only through the proxy, and HAProxy in front of them when it is installed
(docs/operations.md's configuration, as tests/support/balancer.py runs it; without it the
clients take the instances in turn themselves)."""

from __future__ import annotations

import asyncio
import random
import signal
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from bench.harness import Child, Postgres, free_port, rss_of, wait_ready
from tests.support.balancer import HAPROXY, balancing, recommended_config
from tests.support.databases import restart_postgres
from tests.support.processes import STORYLINE, server_env
from tests.support.servers import serving

from chaos.client import Api, Spread
from chaos.proxy import Proxy
from chaos.record import Recorder
from chaos.upstream import Pipeline, VideoService

DATABASE = "chaos"
NAMES = "abcdefgh"  # of the instances, as HAProxy's server lines name them


@dataclass(frozen=True)
class Timeouts:
    """The instances' timeouts, short so that the sweeper settles a run's leftovers within
    seconds of its end. The pending timeout outlasts the upstream call, as config requires."""

    upstream: float = 1.0
    pending: float = 3.0
    processing: float = 6.0
    sweep_interval: float = 1.0

    def settings(self) -> dict[str, str]:
        return {
            "upstream_timeout": str(self.upstream),
            "pending_timeout": str(self.pending),
            "processing_timeout": str(self.processing),
            "sweep_interval": str(self.sweep_interval),
        }


class Instance:
    def __init__(self, number: int, env: dict[str, str], logs: Path) -> None:
        self.name = f"instance-{number}"
        self.port = free_port()
        argv = [str(STORYLINE), "serve", "--no-migrate", "--port", str(self.port)]
        self.child = Child(self.name, argv, log=logs / f"{self.name}.log", env=env)
        self.starts = 0
        self.kills = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.child.pid

    def alive(self) -> bool:
        return self.child.alive()

    async def start(self) -> None:
        await self.child.start()
        await wait_ready(self.child, self.port, "/readyz")
        self.starts += 1

    async def kill(self) -> None:
        self.kills += 1
        self.child.signal(signal.SIGKILL)
        assert self.child.process is not None
        await self.child.process.wait()

    def pause(self) -> None:
        self.child.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.child.signal(signal.SIGCONT)

    def rss(self) -> int:
        return rss_of(self.pid)

    async def metrics(self, session: aiohttp.ClientSession) -> dict[str, float]:
        """The unlabelled samples of /metrics."""
        async with session.get(f"{self.url}/metrics") as response:
            text = await response.text()
        samples = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if line and not line.startswith("#") and "{" not in name:
                samples[name] = float(value)
        return samples


class Cluster:
    def __init__(
        self,
        work: Path,
        logs: Path,
        recorder: Recorder,
        rng: random.Random,
        *,
        size: int = 3,
        timeouts: Timeouts,
        balancer: bool = True,
    ) -> None:
        self.work, self.logs = work, logs
        self.size = size
        self.timeouts = timeouts
        self.balanced = balancer and HAPROXY is not None
        self.stack = AsyncExitStack()
        self.postgres: Postgres | None = None
        self.proxy: Proxy | None = None
        self.instances: list[Instance] = []
        self.spread = Spread([])
        self.api = Api(self.spread)
        self.pipeline = Pipeline(self.api, recorder, rng)
        # Hangs past Storyline's upstream timeout: the call is abandoned, the outcome unknown.
        self.video = VideoService(self.pipeline, rng, hang=timeouts.upstream * 3)

    @property
    def database_url(self) -> str:
        """Straight to PostgreSQL, past the proxy: the harness's own reads and faults."""
        assert self.postgres is not None
        return self.postgres.url(DATABASE)

    async def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.postgres = await asyncio.to_thread(Postgres, self.work / "pg")
        await self.postgres.create(DATABASE)
        info = self.postgres.server.get_postmaster_info()
        self.proxy = Proxy(f"{info.socket_dir}/.s.PGSQL.{info.port}")
        proxy_port = await self.proxy.start()
        upstream = await self.stack.enter_async_context(serving(self.video.app))
        env = server_env(
            f"postgresql://postgres@127.0.0.1:{proxy_port}/{DATABASE}",
            upstream_url=upstream,
            upstream_token="chaos-upstream-token",  # noqa: S106 - the fake checks none
            db_pool_size="8",
            log_level="WARNING",
            log_format="json",
            data_dir=str(self.work / "storyline-data"),
            **self.timeouts.settings(),
        )
        self.instances = [Instance(number, env, self.logs) for number in range(self.size)]
        await asyncio.gather(*(instance.start() for instance in self.instances))
        if self.balanced:
            servers = {name: i.url for name, i in zip(NAMES, self.instances, strict=False)}
            config = with_servers(recommended_config(), list(servers))
            balancer = await self.stack.enter_async_context(
                balancing(servers, self.work, config=config)
            )
            self.spread.urls[:] = [balancer.url]
        else:
            self.spread.urls[:] = [instance.url for instance in self.instances]
        await self.stack.enter_async_context(self.api)

    async def restart_postgres(self) -> None:
        assert self.postgres is not None
        await asyncio.to_thread(restart_postgres, self.postgres.server)

    async def terminate(self, pids: list[int]) -> int:
        """pg_terminate_backend on each; how many it terminated."""
        assert self.postgres is not None
        rows = await self.postgres.fetch(
            DATABASE,
            "SELECT count(*) FROM unnest($1::int[]) AS p WHERE pg_terminate_backend(p)",
            pids,
        )
        return int(rows[0][0])

    async def close(self) -> None:
        await self.pipeline.stop()
        for instance in self.instances:
            instance.resume()  # a stopped process cannot act on SIGTERM
        await asyncio.gather(*(instance.child.stop() for instance in self.instances))
        await self.stack.aclose()
        if self.proxy is not None:
            await self.proxy.close()
        if self.postgres is not None:
            self.postgres.cleanup()


def with_servers(config: str, names: list[str]) -> str:
    """``config`` with one ``server`` line per name: the lines it has, and copies of its last
    one (options and all) under the names it lacks."""
    lines = config.splitlines()
    last = max(n for n, line in enumerate(lines) if line.split()[:1] == ["server"])
    template = lines[last].split()
    indent = lines[last][: len(lines[last]) - len(lines[last].lstrip())]
    have = sum(line.split()[:1] == ["server"] for line in lines)
    extra = [indent + " ".join(["server", name, *template[2:]]) for name in names[have:]]
    return "\n".join(lines[: last + 1] + extra + lines[last + 1 :]) + "\n"
