"""Plumbing: child processes (each in its own process group), the bench's PostgreSQL, CPU."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar

import psutil

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the bench dies, however it dies."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Child:
    """A started process in a process group of its own, stopped with its whole group."""

    running: ClassVar[list[Child]] = []

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        log: Path,
        env: dict[str, str] | None = None,
        pipes: bool = False,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.pipes = pipes
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> Child:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=asyncio.subprocess.PIPE if self.pipes else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if self.pipes else log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                limit=1 << 24,
            )
        Child.running.append(self)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def signal(self, signum: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    async def stop(self, grace: float = 15.0) -> None:
        if self.process is None:
            return
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                self.signal(signal.SIGKILL)
                await self.process.wait()
        # Whatever the group leader left behind goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self in Child.running:
            Child.running.remove(self)

    async def call(self, command: dict[str, Any], limit: float = 600) -> dict[str, Any]:
        """Send one JSON command line, read one JSON answer line."""
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()
        return await self.read(limit)

    async def read(self, limit: float = 600) -> dict[str, Any]:
        assert self.process is not None
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), limit)
        if not line:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{self.name} exited without answering; log tail:\n{tail}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    @classmethod
    async def stop_all(cls) -> None:
        for child in list(cls.running):
            with contextlib.suppress(Exception):
                await child.stop(grace=5)


async def http_status(port: int, path: str, *, method: str = "GET", body: bytes = b"") -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        line = await asyncio.wait_for(reader.readline(), 10)
        return int(line.split()[1]) if line else 0
    finally:
        writer.close()


async def wait_ready(
    child: Child,
    port: int,
    path: str,
    *,
    method: str = "GET",
    body: bytes = b"",
    limit: float = 90,
) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not child.alive():
            tail = child.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{child.name} exited during start-up; log tail:\n{tail}")
        with contextlib.suppress(OSError, TimeoutError, ValueError, IndexError):
            if await http_status(port, path, method=method, body=body) == 200:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} not ready after {limit} s (log: {child.log})")


def code_version() -> str:
    """The commit under test, ``+dirty`` when src/ (migrations included) has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def cpu_of(pids: list[int]) -> dict[int, float]:
    times: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            cpu = psutil.Process(pid).cpu_times()
            times[pid] = cpu.user + cpu.system
    return times


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two snapshots; a process gone since counts until it left."""
    return sum(after.get(pid, start) - start for pid, start in before.items()) + sum(
        spent for pid, spent in after.items() if pid not in before
    )


def rss_of(pid: int) -> int:
    rss: int = psutil.Process(pid).memory_info().rss
    return rss


class Postgres:
    """The bench's own PostgreSQL (pgserver, unix socket), one database per system."""

    def __init__(self, root: Path) -> None:
        from storyline.persistence.embedded import embedded_server

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.server = embedded_server(root, cleanup_mode="delete")
        self.socket_dir = str(root.resolve() / "postgres")

    def url(self, database: str = "postgres") -> str:
        uri: str = self.server.get_uri(database=database)
        return uri

    def node_url(self, database: str) -> str:
        """node-postgres's spelling of a unix-socket connection."""
        return f"postgres://postgres@/{database}?host={self.socket_dir}"

    def pids(self) -> list[int]:
        pid = self.server.get_pid()
        if pid is None:
            return []
        try:
            postmaster = psutil.Process(pid)
            return [pid, *(child.pid for child in postmaster.children(recursive=True))]
        except psutil.Error:
            return []

    async def execute(self, database: str, *statements: str) -> None:
        import asyncpg

        connection = await asyncpg.connect(self.url(database))
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    async def fetch(self, database: str, query: str, *args: Any) -> list[Any]:
        import asyncpg

        connection = await asyncpg.connect(self.url(database))
        try:
            rows: list[Any] = await connection.fetch(query, *args)
            return rows
        finally:
            await connection.close()

    async def create(self, database: str) -> None:
        await self.execute("postgres", f'DROP DATABASE IF EXISTS "{database}"')
        await self.execute("postgres", f'CREATE DATABASE "{database}"')
        from storyline.persistence.migrate import migrate

        await asyncio.to_thread(migrate, self.url(database))

    async def version(self) -> str:
        rows = await self.fetch("postgres", "SHOW server_version")
        return str(rows[0][0])

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.server.cleanup()


def on_scratch_database(name: str, main: Callable[[str, Path], Coroutine[Any, Any, None]]) -> None:
    """Run ``main(url, work)`` under uvloop on a database of its own (Storyline's migrations)
    in a PostgreSQL of its own, in a working directory removed afterwards."""
    import uvloop

    with tempfile.TemporaryDirectory(prefix=f"slbench-{name}-") as work:
        postgres = Postgres(Path(work) / "pg")
        try:
            asyncio.run(postgres.create(name))
            uvloop.run(main(postgres.url(name), Path(work)))
        finally:
            postgres.cleanup()
