"""The endpoints that watch an instance: /healthz (the process answers), /readyz (the
database and the listener are reachable: 503 while either is away) and /metrics
(Prometheus)."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from storyline.persistence.database import Unreachable
from storyline.services import Services


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    services: Services = request.app.state.services
    listener = "connected" if services.broadcast.listener.connected else "disconnected"
    try:
        async with asyncio.timeout(2):
            await services.database.ping()
        database = "ok"
    except (Unreachable, TimeoutError):
        database = "unreachable"
    ready = database == "ok" and listener == "connected"
    return JSONResponse(
        {"database": database, "listener": listener}, status_code=200 if ready else 503
    )


async def prometheus(request: Request) -> Response:
    services: Services = request.app.state.services
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", prometheus),
]
