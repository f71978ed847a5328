"""Real ``storyline serve`` processes, for tests that need more than one or must kill one."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from asyncio.subprocess import Process
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.client import JWT_SECRET, Client, client
from tests.support.servers import free_port

STORYLINE = Path(sys.executable).parent / "storyline"


@dataclass
class ServerProcess:
    url: str
    process: Process
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def exited(self, within: float = 10) -> int:
        """The exit status, once the process has ended on its own."""
        return await asyncio.wait_for(self.process.wait(), within)


def server_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment of a server on ``database_url``, nothing inherited from STORYLINE_*."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("STORYLINE_")}
    env |= {
        "STORYLINE_DATABASE_URL": database_url,
        "STORYLINE_JWT_SECRET": JWT_SECRET,
        **{f"STORYLINE_{name.upper()}": value for name, value in settings.items()},
    }
    return env


@asynccontextmanager
async def served(
    env: dict[str, str],
    log: Path,
    *,
    migrate: bool = False,
    storyline: Path = STORYLINE,
    cwd: Path | None = None,
) -> AsyncIterator[ServerProcess]:
    """A ``storyline serve`` process, ready when yielded; stopped (or reaped) afterwards.
    ``storyline`` is the command, this environment's unless another is given."""
    port = free_port()
    command = [str(storyline), "serve", "--port", str(port)]
    if not migrate:
        command.append("--no-migrate")
    with log.open("ab") as output:  # the child keeps its own copy of the descriptor
        process = await asyncio.create_subprocess_exec(
            *command,
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            process_group=0,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        await _ready(server)
        yield server
    finally:
        await _stop(process)


@asynccontextmanager
async def served_together(
    env: dict[str, str], logs: list[Path]
) -> AsyncIterator[list[ServerProcess]]:
    """``served`` processes started at the same time (each takes seconds to start), one a log
    in ``logs``; all stopped afterwards, also when one of them fails to start."""
    async with AsyncExitStack() as stack:
        started = await asyncio.gather(
            *(stack.enter_async_context(served(env, log)) for log in logs), return_exceptions=True
        )
        servers = []
        for server in started:
            if isinstance(server, BaseException):
                raise server
            servers.append(server)
        yield servers


async def _ready(server: ServerProcess, within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            if server.process.returncode is not None:
                raise AssertionError(f"{server.url} exited early:\n{server.output}")
            with suppress(httpx.TransportError):
                if (await http.get(f"{server.url}/readyz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"{server.url} not ready within {within} s:\n{server.output}")
            await asyncio.sleep(0.1)


async def _stop(process: Process) -> None:
    """SIGTERM to the process group, a grace period, then SIGKILL; always reaped."""
    if process.returncode is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 15)
    except TimeoutError:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


@asynccontextmanager
async def two_instances(
    database_url: str, upstream_url: str, logs: Path
) -> AsyncIterator[tuple[Client, Client]]:
    """Two ``storyline serve`` processes on one (migrated) database, and a client of each."""
    env = server_env(database_url, upstream_url=upstream_url)
    async with (
        served(env, logs / "instance-1.log") as first,
        served(env, logs / "instance-2.log") as second,
        client(first.url) as one,
        client(second.url) as two,
    ):
        yield one, two
