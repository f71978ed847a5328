"""A TCP proxy between the instances and PostgreSQL's unix socket, in the harness's loop.

It delays what it forwards (``latency`` seconds, both ways), cuts every connection at once
(``cut``), and knows of each connection its server backend's pid (from the BackendKeyData
message PostgreSQL sends at start-up) and whether it has sent a LISTEN: the listener
backends, which the harness terminates with ``pg_terminate_backend``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

CHUNK = 1 << 16
# SSLRequest and GSSENCRequest: 8 bytes, the last four this code; answered by one byte.
ENCRYPTION_REQUESTS = ((80877103).to_bytes(4, "big"), (80877104).to_bytes(4, "big"))


class Link:
    """One proxied connection."""

    __slots__ = ("_startup", "_unframed", "client", "listening", "pid", "server")

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server
        self.pid: int | None = None
        self.listening = False
        self._startup: bytearray | None = bytearray()  # the server's bytes until the pid
        self._unframed = 0  # one-byte answers to come (to an SSL or GSS request)

    def abort(self) -> None:
        for writer in (self.client, self.server):
            writer.transport.abort()

    def from_client(self, data: bytes) -> None:
        if self._startup is not None and len(data) == 8 and data[4:] in ENCRYPTION_REQUESTS:
            self._unframed += 1
        if not self.listening and b"LISTEN " in data:
            self.listening = True

    def from_server(self, data: bytes) -> None:
        """Read the start-up messages until the backend's pid (BackendKeyData) is known."""
        if self._startup is None:
            return
        buffer = self._startup
        buffer += data
        while self._unframed and buffer:
            self._unframed -= 1
            if buffer[:1] != b"N":  # encryption accepted: the rest cannot be read
                self._startup = None
                return
            del buffer[:1]
        while len(buffer) >= 5:
            kind = bytes(buffer[:1])
            length = int.from_bytes(buffer[1:5], "big")
            if len(buffer) < 1 + length:
                return
            if kind == b"K":
                self.pid = int.from_bytes(buffer[5:9], "big")
            if kind in (b"K", b"Z", b"E"):
                self._startup = None
                return
            del buffer[: 1 + length]


class Proxy:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.latency = 0.0
        self.links: set[Link] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.cut()
        if self.server is not None:
            await self.server.wait_closed()

    def cut(self) -> int:
        """Abort every connection both ways; how many there were."""
        links = list(self.links)
        for link in links:
            link.abort()
        return len(links)

    def listener_pids(self) -> list[int]:
        return [link.pid for link in self.links if link.listening and link.pid is not None]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError:
            # PostgreSQL is down: the instance sees its connection closed, as it would.
            writer.transport.abort()
            return
        link = Link(writer, upstream_writer)
        self.links.add(link)
        try:
            await asyncio.gather(
                self._pump(reader, upstream_writer, link.from_client),
                self._pump(upstream_reader, writer, link.from_server),
            )
        finally:
            self.links.discard(link)
            link.abort()

    async def _pump(
        self,
        source: asyncio.StreamReader,
        target: asyncio.StreamWriter,
        seen: Callable[[bytes], None],
    ) -> None:
        """Forward until either side closes. The delay is per chunk, in order: PostgreSQL's
        protocol is request and answer, so chunks of one direction are rarely back to back
        and the delay added stays about ``latency``."""
        try:
            while data := await source.read(CHUNK):
                seen(data)
                if self.latency:
                    await asyncio.sleep(self.latency)
                target.write(data)
                await target.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                target.transport.abort()
