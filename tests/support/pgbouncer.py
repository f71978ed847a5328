"""PgBouncer in transaction mode in front of the test server, run by the test that needs it.

Debian's ``pgbouncer`` (``make pgbouncer`` installs it); the tests that need it skip without
it. PgBouncer refuses to run as root: under root it is told to become the owner of the
server's socket directory (the embedded server's own user), or ``nobody``.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL, make_url

from tests.support.servers import free_port

# Debian installs it in /usr/sbin, which is not on every user's PATH.
PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
WHY_ABSENT = "pgbouncer is not installed (Debian's pgbouncer package; `make pgbouncer`)"


@dataclass(frozen=True)
class Bouncer:
    port: int
    log: Path

    def url(self, database_url: str) -> str:
        """The database of ``database_url`` (on the test server), reached through PgBouncer."""
        direct = make_url(database_url)
        pooled = URL.create(
            "postgresql",
            username=direct.username,
            host="127.0.0.1",
            port=self.port,
            database=direct.database,
        )
        return pooled.render_as_string(hide_password=False)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")


@asynccontextmanager
async def pgbouncer(server_url: str, directory: Path, *, pool_size: int) -> AsyncIterator[Bouncer]:
    """PgBouncer (``pool_mode = transaction``, at most ``pool_size`` server connections per
    database) in front of the server of ``server_url``, for every database on it; stopped
    afterwards."""
    assert PGBOUNCER is not None, WHY_ABSENT
    port = free_port()
    config = directory / "pgbouncer.ini"
    config.write_text(_ini(server_url, port=port, pool_size=pool_size))
    log = directory / "pgbouncer.log"
    command = [PGBOUNCER, str(config)]
    if os.geteuid() == 0:
        command[1:1] = ["--user", _unprivileged_user(server_url)]
    with log.open("ab") as output:  # the child keeps its own copy of the descriptor
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output
        )
    bouncer = Bouncer(port, log)
    try:
        await _accepting(bouncer, process)
        yield bouncer
    finally:
        if process.returncode is None:
            process.terminate()  # SIGTERM: PgBouncer closes its connections and exits
        await asyncio.wait_for(process.wait(), 10)


def _ini(server_url: str, *, port: int, pool_size: int) -> str:
    server = make_url(server_url)
    # pgserver's URLs name the socket directory in the query (?host=/dir), libpq style.
    host = server.host or str(server.query.get("host", "/var/run/postgresql"))
    target = f"host={host} port={server.port or 5432} user={server.username}"
    if server.password:
        target += f" password={server.password}"
    return f"""\
[databases]
* = {target}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 500
"""


def _unprivileged_user(server_url: str) -> str:
    """Who may reach the server's socket (its directory's owner), or ``nobody``."""
    server = make_url(server_url)
    socket_dir = server.query.get("host")
    if server.host is None and isinstance(socket_dir, str):
        owner = pwd.getpwuid(Path(socket_dir).stat().st_uid).pw_name
        if owner != "root":
            return owner
    return "nobody"


async def _accepting(bouncer: Bouncer, process: asyncio.subprocess.Process) -> None:
    """Return once a client gets an answer through PgBouncer from the server's ``postgres``
    database; raise with PgBouncer's log if it exits or does not answer within 10 s."""
    url = bouncer.url("postgresql://postgres@/postgres")
    deadline = time.monotonic() + 10
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"pgbouncer exited {process.returncode}:\n{bouncer.output}")
        try:
            connection = await asyncpg.connect(url, statement_cache_size=0, timeout=2)
        except (OSError, asyncpg.PostgresError) as refused:
            if time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer does not answer:\n{bouncer.output}") from refused
            await asyncio.sleep(0.05)
            continue
        try:
            await connection.fetchval("SELECT 1")
        finally:
            await connection.close()
        return
