"""The newcomer's path: ``make run`` on a fresh machine, then GraphiQL and one finished story.

Runs the real command from the project root, with nothing configured but a fresh data
directory: an embedded PostgreSQL, a generated secret and the built-in simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.support import Client, free_port
from tests.support.graphiql import served_graphiql

STARTUP_TIMEOUT = 120.0
HEALTHY_TIMEOUT = 30.0
COMPLETION_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
UNCONFIGURED = ("STORYLINE_DATABASE_URL", "STORYLINE_JWT_SECRET", "STORYLINE_UPSTREAM_URL")
TOKEN_LINE = re.compile(r'"Authorization":\s*"Bearer\s+([^"\s]+)"')

GENERATE = """
mutation Generate($input: GenerateStoryInput!) {
  generateStory(input: $input) { id status creditsUsed }
}
"""
PROJECT = """
query Project($id: ID!) { project(id: $id) { id status progress resultUrl errorMessage } }
"""
BALANCE = "query { me { balance } }"


class MakeRun:
    """``make run`` in its own process group; its output is read line by line, always."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.postgres_outlived_it: bool | None = None  # known once stopped
        self._token: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._drain())

    @property
    def output(self) -> str:
        return "".join(self.lines)

    async def _drain(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while line := await stream.readline():
            text = line.decode(errors="replace")
            self.lines.append(text)
            match = TOKEN_LINE.search(text)
            if match and not self._token.done():
                self._token.set_result(match.group(1))
        if not self._token.done():
            self._token.set_exception(EOFError("the output ended before a token was printed"))

    async def token(self) -> str:
        """The token of the printed ``Authorization`` header, waited for up to STARTUP_TIMEOUT."""
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT):
                return await asyncio.shield(self._token)
        except TimeoutError:
            seconds = f"{STARTUP_TIMEOUT:.0f} s"
            pytest.fail(f"`make run` printed no token within {seconds}; so far:\n{self.output}")
        except EOFError:
            await self.process.wait()
            pytest.fail(
                f"`make run` exited ({self.process.returncode}) without printing a token;"
                f" output:\n{self.output}"
            )

    def assert_running(self) -> None:
        assert self.process.returncode is None, (
            f"`make run` exited ({self.process.returncode}); output:\n{self.output}"
        )

    async def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL if it lingers; then the output to its end.

        The server has stopped when make has exited and the pipe is closed: every process
        of the group holds it until it exits (the embedded PostgreSQL, a daemon, does not).
        """
        self._signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await self.process.wait()
                await asyncio.shield(self._reader)
        except TimeoutError:
            self._signal(signal.SIGKILL)
            await self.process.wait()
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self._reader
            except TimeoutError:
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader
        if not self._token.done():
            self._token.cancel()
        elif not self._token.cancelled():
            self._token.exception()  # retrieved, so never reported as unhandled

    def _signal(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


@asynccontextmanager
async def make_run(project_root: Path, port: int, env: dict[str, str]) -> AsyncIterator[MakeRun]:
    process = await asyncio.create_subprocess_exec(
        "make",
        "run",
        "HOST=127.0.0.1",
        f"PORT={port}",
        cwd=project_root,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    server = MakeRun(process)
    pgdata = Path(env["STORYLINE_DATA_DIR"]) / "postgres"
    try:
        yield server
    finally:
        try:
            await server.stop()
            server.postgres_outlived_it = (pgdata / "postmaster.pid").exists()
        finally:
            await stop_leftover_postgres(pgdata)


async def stop_leftover_postgres(pgdata: Path) -> None:
    """Stop the embedded PostgreSQL if it outlived the server, so no test leaves one behind."""
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
    for _ in range(int(STOP_TIMEOUT / 0.05)):
        if not pid_file.exists():
            return
        await asyncio.sleep(0.05)


async def wait_until_healthy(http: httpx.AsyncClient, server: MakeRun) -> None:
    deadline = time.monotonic() + HEALTHY_TIMEOUT
    last: str = "no answer yet"
    while time.monotonic() < deadline:
        server.assert_running()
        try:
            response = await http.get("/healthz")
        except httpx.TransportError as error:
            last = repr(error)
        else:
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text}"
        await asyncio.sleep(0.1)
    pytest.fail(f"/healthz never answered 200 (last: {last}); output:\n{server.output}")


@pytest.mark.slow
async def test_make_run_serves_graphiql_and_finishes_a_story(
    project_root: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name not in UNCONFIGURED}
    data_dir = tmp_path / "data"
    env["STORYLINE_DATA_DIR"] = str(data_dir)
    env["STORYLINE_SIMULATOR_STEP_SECONDS"] = "0.05"

    async with (
        make_run(project_root, port, env) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        token = await server.token()
        await wait_until_healthy(http, server)

        # (a) a browser gets GraphiQL, all of it from this server, each file as pinned
        # (tests/test_graphiql.py runs it in a browser)
        await served_graphiql(http)

        # (b) the printed token can order a story at the default price
        graphql = Client(http)
        data = await graphql.data(
            GENERATE, {"input": {"prompt": "A lighthouse keeper adopts a seal"}}, auth=token
        )
        project = data["generateStory"]
        assert project["status"] in ("PROCESSING", "COMPLETED"), project
        assert project["creditsUsed"] == 60

        # (c) the built-in simulator carries it to the end
        deadline = time.monotonic() + COMPLETION_TIMEOUT
        while True:
            current = (await graphql.data(PROJECT, {"id": project["id"]}, auth=token))["project"]
            assert current is not None
            if current["status"] == "COMPLETED" or time.monotonic() > deadline:
                break
            assert current["status"] in ("PENDING", "PROCESSING"), current
            await asyncio.sleep(0.1)
        assert current["status"] == "COMPLETED", f"{current}\noutput:\n{server.output}"
        assert current["resultUrl"].startswith("https://"), current
        assert current["progress"] == 100, current

        # (d) the sign-up grant less the one charge
        me = (await graphql.data(BALANCE, auth=token))["me"]
        assert me["balance"] == 100 - 60
        server.assert_running()

    # (e) stopping the server (SIGTERM, as process managers do) stops its PostgreSQL too
    assert server.postgres_outlived_it is False, server.output
