"""What a running instance owns: opened at start-up, closed at shutdown (Starlette's lifespan)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from storyline.config import Settings
from storyline.jobs.sweeper import run_sweeper
from storyline.live.hub import ProjectBroadcast
from storyline.metrics import Metrics
from storyline.persistence.database import Database, Unreachable
from storyline.persistence.listener import PostgresListener
from storyline.services import Background, Services
from storyline.upstream.client import VideoService
from storyline.upstream.simulator import Simulator
from storyline.usecases import subscriptions

if TYPE_CHECKING:
    from storyline.telemetry.tracing import Tracing

log = logging.getLogger(__name__)


def lifespan(
    settings: Settings,
    *,
    database_url: str,
    video_url: str,
    jwt_secret: str,
    upstream_token: str,
    metrics: Metrics,
    simulator: Simulator | None,
    tracing: Tracing | None,
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Opens the database, the video service's client and the listener, puts the
    ``Services`` in ``app.state.services`` and runs the sweeper; at shutdown lets paid jobs
    being created finish, then closes all of it (and ``simulator``, the built-in one)."""

    @asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        database = Database.open(
            database_url,
            pool_size=settings.db_pool_size,
            transaction_pooler=settings.database_pooler == "transaction",
        )
        video = VideoService(
            video_url,
            token=upstream_token,
            timeout=settings.upstream_timeout,
            trace_configs=tracing.trace_configs() if tracing is not None else (),
        )
        broadcast = ProjectBroadcast(PostgresListener(settings.session_database_url(database_url)))
        background = Background()
        metrics.follow(
            subscriptions=lambda: broadcast.subscriber_count,
            reconnects=lambda: broadcast.listener.reconnects,
        )
        if tracing is not None:
            tracing.start()
        try:
            await _wait_for_database(database)
            await broadcast.connect()
            app.state.services = Services(
                settings=settings,
                database=database,
                video=video,
                jwt_secret=jwt_secret,
                broadcast=broadcast,
                metrics=metrics,
                background=background,
                project_rows=subscriptions.project_rows(database),
            )
            sweeper = asyncio.create_task(
                run_sweeper(app.state.services, interval=settings.sweep_interval),
                name="storyline-sweeper",
            )
            try:
                yield
            finally:
                # Paid jobs being created get their upstream answer recorded before we go.
                await background.drain(settings.upstream_timeout + 5)
                sweeper.cancel()
                await asyncio.gather(sweeper, return_exceptions=True)
        finally:
            if hasattr(app.state, "services"):
                await app.state.services.project_rows.aclose()
            await broadcast.disconnect()
            if simulator is not None:
                await simulator.aclose()
            await video.aclose()
            await database.dispose()
            if tracing is not None:
                tracing.close()

    return run


async def _wait_for_database(database: Database, *, attempts: int = 30) -> None:
    for attempt in range(attempts):
        try:
            await database.ping()
            return
        except Unreachable:
            if attempt == attempts - 1:
                raise
            log.warning("database not reachable yet; retrying")
            await asyncio.sleep(1)
