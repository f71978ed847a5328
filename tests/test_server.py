"""The HTTP server's own limits, over raw sockets: a request's head is held to 64 KiB, and a
request not received in full within ``request_timeout`` seconds is closed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import pytest

from storyline.server import MAX_HEAD_BYTES
from tests.support import Api, bearer, storyline, token
from tests.support.logs import errors_logged

TIMEOUT = 1.0
ME = json.dumps({"query": "{ me { balance } }"}).encode()


@pytest.fixture(scope="module")
async def quick(database_url: str) -> AsyncIterator[Api]:
    """Storyline with a one-second request timeout."""
    async with storyline(
        database_url, upstream_url="http://127.0.0.1:9", request_timeout=TIMEOUT
    ) as api:
        yield api


@asynccontextmanager
async def connection(api: Api) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    url = urlsplit(api.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        yield reader, writer
    finally:
        writer.close()


def head(content_length: int | None = None, *extra: str) -> bytes:
    lines = ["POST /graphql HTTP/1.1", "Host: storyline", "Content-Type: application/json"]
    lines.append(f"Authorization: Bearer {token('slow-client')}")
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode()


async def answer(reader: asyncio.StreamReader, within: float) -> tuple[int | None, bytes]:
    """The status the server answered before closing (None: closed without one), and the
    rest of what it sent; fails unless the server closes the connection ``within`` seconds."""
    try:
        received = await asyncio.wait_for(reader.read(), within)
    except ConnectionResetError:
        # The server closed while the client was still sending: the kernel answers what
        # arrives after with a reset, which can overtake the response in the client's reads.
        return None, b""
    if not received:
        return None, b""
    status_line, _, rest = received.partition(b"\r\n")
    return int(status_line.split()[1]), rest


async def test_a_request_head_over_64_kib_is_refused_with_431(api: Api) -> None:
    async with connection(api) as (reader, writer):
        writer.write(head(len(ME), "X-Padding: " + "a" * MAX_HEAD_BYTES) + ME)
        status, rest = await answer(reader, 5)
    assert status == 431
    assert b'"BAD_USER_INPUT"' in rest


async def test_an_endless_head_is_refused_before_it_ends(api: Api) -> None:
    """Headers that never end are refused once they pass the limit, not held in memory."""
    status: int | None = None
    sent = 0
    async with connection(api) as (reader, writer):
        try:
            writer.write(b"POST /graphql HTTP/1.1\r\nHost: storyline\r\n")
            while sent < 8 * 1024 * 1024:  # unless the server stops it first
                line = f"X-Pad-{sent}: {'a' * 1000}\r\n".encode()
                writer.write(line)
                await writer.drain()
                await asyncio.sleep(0)  # the server runs in this event loop: let it read
                sent += len(line)
            status, _ = await answer(reader, 5)
        except ConnectionError:
            status = None  # closed while we were still sending: refused as well
    assert status in (431, None)
    assert sent < 1024 * 1024, "the server read a megabyte of headers"


async def test_a_head_just_under_the_limit_is_served(api: Api) -> None:
    padding = "a" * (MAX_HEAD_BYTES - 2048)
    response = await api.http.post(
        "/graphql",
        content=ME,
        headers={
            "Content-Type": "application/json",
            "Authorization": bearer("padded"),
            "X-Padding": padding,
        },
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"me": {"balance": 100}}}


async def test_a_client_that_stalls_in_its_headers_is_closed(quick: Api) -> None:
    started = time.monotonic()
    async with connection(quick) as (reader, writer):
        writer.write(head(len(ME))[:40])  # half a request line and a header, then nothing
        status, _ = await answer(reader, TIMEOUT + 4)
    assert status in (408, None)
    assert time.monotonic() - started >= TIMEOUT * 0.9


async def test_a_client_that_trickles_its_headers_is_closed(quick: Api) -> None:
    """Bytes that keep coming do not extend the deadline: it is for the whole request."""
    started = time.monotonic()
    async with connection(quick) as (reader, writer), sending(writer, head(len(ME)), 1):
        status, _ = await answer(reader, TIMEOUT + 4)
    assert status in (408, None)
    assert time.monotonic() - started < TIMEOUT + 3


async def test_a_client_that_stalls_in_its_body_is_closed(quick: Api) -> None:
    with errors_logged() as errors:
        async with connection(quick) as (reader, writer):
            writer.write(head(len(ME)) + ME[:10])  # the body, cut short
            status, _ = await answer(reader, TIMEOUT + 4)
        await asyncio.sleep(0.1)  # the application hears of the disconnect
    assert status in (408, None)
    assert not errors, errors


async def test_an_unending_chunked_body_is_closed(quick: Api) -> None:
    started = time.monotonic()
    with errors_logged() as errors:
        async with connection(quick) as (reader, writer):
            writer.write(head(None, "Transfer-Encoding: chunked"))
            async with sending(writer, b"1\r\n \r\n" * 10_000, 7):
                status, _ = await answer(reader, TIMEOUT + 4)
        await asyncio.sleep(0.1)
    assert status in (408, None)
    assert time.monotonic() - started < TIMEOUT + 3
    assert not errors, errors


async def test_a_connection_that_sends_nothing_is_closed(quick: Api) -> None:
    async with connection(quick) as (reader, _):
        status, _ = await answer(reader, TIMEOUT + 4)
    assert status in (408, None)


async def test_the_timeout_is_for_receiving_a_request_not_for_answering_it(quick: Api) -> None:
    """A keep-alive connection serves request after request for longer than the timeout,
    and a request sent in pieces within the timeout is served."""
    started = time.monotonic()
    async with connection(quick) as (reader, writer):
        while time.monotonic() - started < TIMEOUT * 2:
            request = head(len(ME)) + ME
            writer.write(request[:50])
            await asyncio.sleep(TIMEOUT / 4)
            writer.write(request[50:])
            status_line = await asyncio.wait_for(reader.readline(), 5)
            assert status_line.split()[1] == b"200"
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length))
            assert body == {"data": {"me": {"balance": 100}}}


@asynccontextmanager
async def sending(writer: asyncio.StreamWriter, data: bytes, step: int) -> AsyncIterator[None]:
    """Sends ``data`` ``step`` bytes every 50 ms meanwhile."""

    async def trickle() -> None:
        for at in range(0, len(data), step):
            writer.write(data[at : at + step])
            await asyncio.sleep(0.05)

    task = asyncio.create_task(trickle())
    try:
        yield
    finally:
        task.cancel()
