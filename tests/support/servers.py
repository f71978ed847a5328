"""Storyline (and stand-ins) served by uvicorn in this event loop, on real sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from storyline.app import create_app
from storyline.config import Settings
from storyline.server import uvicorn_options
from tests.support.client import JWT_SECRET, LIMITS, UPSTREAM_TOKEN, Api

if TYPE_CHECKING:
    from storyline.telemetry.tracing import Tracing


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with free_socket() as sock:
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serving(
    app: ASGIApp, sock: socket.socket | None = None, **options: Any
) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn in this event loop; yields its base URL."""
    sock = sock or free_socket()
    port = sock.getsockname()[1]
    options = {"ws_per_message_deflate": False, **options}
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def storyline(database_url: str, **overrides: Any) -> AsyncIterator[Api]:
    """A Storyline instance on a real port, configured like production but for ``overrides``
    (settings, and ``tracing``: a storyline.telemetry Tracing to trace with)."""
    tracing: Tracing | None = overrides.pop("tracing", None)
    values: dict[str, Any] = {
        "jwt_secret": JWT_SECRET,
        # Also the built-in simulator's, which would otherwise generate one in the data dir.
        "upstream_token": UPSTREAM_TOKEN,
        "upstream_timeout": 1.0,
        **overrides,
    }
    settings = Settings.model_validate(values)
    sock = free_socket()
    self_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(settings, database_url=database_url, self_url=self_url, tracing=tracing)
    served = serving(app, sock, **uvicorn_options(settings))
    async with served as url, httpx.AsyncClient(base_url=url, timeout=30, limits=LIMITS) as http:
        yield Api(http, app)
