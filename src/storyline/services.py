"""What a running instance shares between requests; built by the app's lifespan."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from storyline.config import Settings
from storyline.live.hub import ProjectBroadcast
from storyline.metrics import Metrics
from storyline.persistence.batches import Batched
from storyline.persistence.database import Database
from storyline.persistence.projects import ProjectRecord
from storyline.upstream.client import VideoService

T = TypeVar("T")


class Background:
    """Tasks that must finish even when the request that started them is cancelled."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, within: float) -> None:
        """Let running tasks finish (on shutdown), for up to ``within`` seconds."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=within)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    database: Database
    video: VideoService
    jwt_secret: str
    broadcast: ProjectBroadcast
    metrics: Metrics
    background: Background
    # Project rows by id, read together when many watchers ask at once (a reconnect storm).
    project_rows: Batched[uuid.UUID, ProjectRecord]
