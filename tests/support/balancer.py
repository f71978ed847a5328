"""HAProxy in front of ``storyline serve`` processes, run with the configuration that
docs/operations.md recommends (the block after ``CONFIG_MARKER``), only its addresses
replaced: the listening port, the servers and the admin socket."""

from __future__ import annotations

import asyncio
import csv
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import free_port

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
CONFIG_MARKER = "<!-- haproxy.cfg: tests/support/balancer.py runs this configuration -->"
# Debian puts it in /usr/sbin, which is not on every user's PATH.
HAPROXY = shutil.which("haproxy", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def recommended_config() -> str:
    """The haproxy.cfg of docs/operations.md: the fenced block right after the marker."""
    found = re.search(
        re.escape(CONFIG_MARKER) + r"\s*```haproxy\n(.*?)```", OPERATIONS.read_text(), re.DOTALL
    )
    assert found, f"no haproxy configuration after {CONFIG_MARKER!r} in {OPERATIONS}"
    return found[1]


def render(config: str, *, port: int, servers: list[str], admin: Path) -> str:
    """``config`` listening on 127.0.0.1:``port``, with ``servers`` (host:port, in the order of
    its ``server`` lines, whose names and options stay) and its admin socket at ``admin``."""
    lines, binds, named = [], 0, 0
    for line in config.splitlines():
        indent, words = line[: len(line) - len(line.lstrip())], line.split()
        if words[:1] == ["bind"]:
            line, binds = f"{indent}bind 127.0.0.1:{port}", binds + 1
        elif words[:1] == ["server"]:
            assert named < len(servers), f"more server lines than the {len(servers)} given"
            words[2], named = servers[named], named + 1
            line = indent + " ".join(words)
        elif words[:2] == ["stats", "socket"]:
            words[2] = str(admin)
            line = indent + " ".join(words)
        lines.append(line)
    assert (binds, named) == (1, len(servers)), f"{binds} bind and {named} server lines"
    return "\n".join(lines) + "\n"


@dataclass
class Balancer:
    url: str
    admin: Path
    process: asyncio.subprocess.Process

    async def servers(self) -> dict[str, dict[str, str]]:
        """HAProxy's ``show stat`` rows of its servers, by server name."""
        reader, writer = await asyncio.open_unix_connection(self.admin)
        try:
            writer.write(b"show stat\n")
            await writer.drain()
            answer = (await reader.read()).decode()
        finally:
            writer.close()
        rows = csv.DictReader(answer.removeprefix("# ").splitlines())
        return {row["svname"]: row for row in rows if row["svname"] not in ("FRONTEND", "BACKEND")}

    async def until(self, states: dict[str, str], *, within: float = 15) -> None:
        """Wait (bounded) until each named server's ``status`` is the one given (UP, DOWN...)."""
        deadline = time.monotonic() + within
        while True:
            with suppress(OSError):  # the socket appears once the configuration is loaded
                rows = await self.servers()
                if all(_is(rows[name], state) for name, state in states.items()):
                    return
            if self.process.returncode is not None:
                raise AssertionError(f"haproxy exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError(f"haproxy's servers are not {states} within {within} s")
            await asyncio.sleep(0.05)


def _is(row: dict[str, str], state: str) -> bool:
    """A server counts as UP once its last health check passed, not merely assumed up."""
    return row["status"] == state and (state != "UP" or "L7OK" in row["check_status"])


@asynccontextmanager
async def balancing(
    servers: dict[str, str], workdir: Path, *, config: str | None = None
) -> AsyncIterator[Balancer]:
    """HAProxy with the recommended configuration (or ``config``, one of the same shape), its
    servers ``name: base URL`` in the order of the configuration's ``server`` lines (whose
    names they must be); yielded once every server passes its health check; stopped
    afterwards."""
    assert HAPROXY is not None, "haproxy is not installed"
    port = free_port()
    admin = workdir / "haproxy.sock"
    config = render(
        config or recommended_config(),
        port=port,
        servers=[url.removeprefix("http://") for url in servers.values()],
        admin=admin,
    )
    for name in servers:
        assert re.search(rf"^\s*server {name} ", config, re.MULTILINE), f"no server {name}"
    path = workdir / "haproxy.cfg"
    path.write_text(config)
    with (workdir / "haproxy.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            HAPROXY,
            "-db",  # in the foreground, a child of this test
            "-f",
            str(path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    balancer = Balancer(f"http://127.0.0.1:{port}", admin, process)
    try:
        await balancer.until(dict.fromkeys(servers, "UP"))
        yield balancer
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
