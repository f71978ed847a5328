"""The video service client: create a job, read one back.

Outcomes of ``create_job`` map onto what Storyline does next:
accepted -> confirm, refused -> fail and refund, timed out -> leave PENDING for the sweeper.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

log = logging.getLogger(__name__)

QUALITY = {"SD": "sd", "HD": "hd", "FULL_HD": "full_hd"}
ASPECT_RATIO = {
    "LANDSCAPE_16_9": "16:9",
    "PORTRAIT_9_16": "9:16",
    "SQUARE_1_1": "1:1",
    "CLASSIC_4_3": "4:3",
}


@dataclass(frozen=True, slots=True)
class JobRequest:
    project_id: str
    prompt: str
    quality: str
    aspect_ratio: str
    image_model: str
    seed: int | None

    def payload(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "prompt": self.prompt,
            "aspect_ratio": ASPECT_RATIO[self.aspect_ratio],
            "quality": QUALITY[self.quality],
            "image_generation_config_name": self.image_model,
            "auto_mode": True,
            "entity_ids": [],
        }
        if self.seed is not None:
            config["seed"] = self.seed
        return {
            "template_name": "story",
            "config": config,
            "metadata": {"storyline_project_id": self.project_id},
        }


class UpstreamRefused(Exception):
    """The job was definitely not created; ``reason`` is safe to show the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UpstreamTimedOut(Exception):
    """The call was abandoned after the request may have reached the service."""


class VideoService:
    def __init__(self, base_url: str, *, token: str, timeout: float) -> None:
        self._deadline = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_job(self, job: JobRequest) -> str:
        """The upstream project id. Raises UpstreamRefused or UpstreamTimedOut."""
        try:
            # httpx's timeout bounds each phase; the deadline bounds the whole call, so a
            # service that trickles its answer cannot outlast STORYLINE_UPSTREAM_TIMEOUT.
            async with asyncio.timeout(self._deadline):
                response = await self._http.post("/api/v1/project/video", json=job.payload())
        except TimeoutError as exc:
            raise UpstreamTimedOut from exc
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing was sent: the job cannot exist.
            raise UpstreamRefused("could not connect") from exc
        except httpx.TransportError as exc:
            # Sent, but no answer came back: the job may or may not exist.
            raise UpstreamTimedOut from exc
        if response.status_code >= 400:
            log.warning("video service answered HTTP %s", response.status_code)
            raise UpstreamRefused(f"HTTP {response.status_code}")
        try:
            external_id = response.json()["id"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamRefused("malformed answer") from exc
        if isinstance(external_id, int) and not isinstance(external_id, bool):
            external_id = str(external_id)
        if not isinstance(external_id, str) or not 0 < len(external_id) <= 255:
            raise UpstreamRefused("malformed answer")
        return external_id

    async def get_job(self, external_id: str) -> dict[str, Any]:
        response = await self._http.get(f"/api/v1/project/{quote(external_id, safe='')}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body
