"""What a running instance shares between requests; built by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from storyline.config import Settings
from storyline.live.hub import ProjectBroadcast
from storyline.metrics import Metrics
from storyline.upstream.client import VideoService


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    video: VideoService
    jwt_secret: str
    broadcast: ProjectBroadcast
    metrics: Metrics
