"""WebSocket keep-alive: pings that find vanished clients, spread so they never come in bursts.

The client here speaks raw WebSocket frames (RFC 6455) over a TCP stream, so the test sees
each ping the server sends, when it sends it, and answers (or does not) itself.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from tests.support import storyline

PING, PONG, CLOSE = 0x9, 0xA, 0x8
INTERVAL = 1.0
SLACK = 0.3  # scheduling on a busy two-core machine


class RawSocket:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, opened: float
    ) -> None:
        self.reader, self.writer = reader, writer
        self.opened = opened  # before the upgrade request: the server's timers start later
        # and before the answer is read: the handshake's time bounds how much later.
        self.handshake = asyncio.get_running_loop().time() - opened

    async def frame(self) -> tuple[int, bytes, float]:
        """The next frame from the server: opcode, payload, seconds since the upgrade."""
        first, second = await self.reader.readexactly(2)
        assert not second & 0x80, "server frames are never masked"
        length = second & 0x7F
        if length >= 126:
            length = int.from_bytes(await self.reader.readexactly(2 if length == 126 else 8))
        payload = await self.reader.readexactly(length)
        return first & 0x0F, payload, asyncio.get_running_loop().time() - self.opened

    def pong(self, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.writer.write(bytes([0x80 | PONG, 0x80 | len(payload)]) + mask + masked)


@asynccontextmanager
async def raw_websocket(url: str) -> AsyncIterator[RawSocket]:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    key = base64.b64encode(os.urandom(16)).decode()
    opened = asyncio.get_running_loop().time()
    writer.write(
        (
            f"GET /graphql HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    try:
        yield RawSocket(reader, writer, opened)
    finally:
        writer.close()


async def test_connections_opened_together_are_pinged_apart_and_keep_being_pinged(
    database_url: str,
) -> None:
    async with storyline(database_url, ws_ping_interval=INTERVAL) as api:

        async def pings() -> tuple[float, float, float]:
            async with raw_websocket(api.url) as ws:
                opcode, payload, first = await ws.frame()
                assert opcode == PING
                ws.pong(payload)
                opcode, _, second = await ws.frame()
                assert opcode == PING, "an answered ping is followed by the next"
                return first, second, ws.handshake

        times = await asyncio.gather(*(pings() for _ in range(20)))
    firsts = sorted(first for first, _, _ in times)
    # Each first ping comes between half and the whole interval after the connection opened,
    assert firsts[0] >= INTERVAL / 2, firsts
    for first, _, handshake in times:  # (its timer started before the handshake ended)
        assert first - handshake <= INTERVAL + SLACK, (first, handshake)
    # at its own moment: opened together, pinged apart (uvicorn's own pings all at 1.0 s).
    assert firsts[-1] - firsts[0] >= 0.15, firsts
    for first, second, _ in times:
        assert INTERVAL - SLACK <= second - first <= INTERVAL + SLACK, (first, second)


async def test_a_client_that_stops_answering_pings_is_disconnected(database_url: str) -> None:
    async with (
        storyline(database_url, ws_ping_interval=INTERVAL, ws_ping_timeout=0.5) as api,
        raw_websocket(api.url) as ws,
    ):
        opcode, _, pinged = await ws.frame()
        assert opcode == PING
        opcode, payload, closed = await asyncio.wait_for(ws.frame(), timeout=5)
        assert opcode == CLOSE
        assert int.from_bytes(payload[:2]) == 1011  # keepalive ping timeout
        assert closed - pinged >= 0.5 - 0.05  # both read late or early alike
