"""The video service client: create a job, read one back.

Outcomes of ``create_job`` map onto what Storyline does next:
accepted -> confirm, refused -> fail and refund, timed out -> leave PENDING for the sweeper.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

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
    """aiohttp rather than httpx here: this call is on generateStory's every request, and
    aiohttp's client costs a small fraction of httpx's CPU per call."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str,
        timeout: float,
        trace_configs: Sequence[aiohttp.TraceConfig] = (),
    ) -> None:
        """``trace_configs``: aiohttp's, for tracing (storyline.telemetry); none when off."""
        self._base_url = base_url.rstrip("/")
        self._deadline = timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._trace_configs = list(trace_configs)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=100),
                raise_for_status=False,
                trace_configs=self._trace_configs or None,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def create_job(self, job: JobRequest) -> str:
        """The upstream project id. Raises UpstreamRefused or UpstreamTimedOut."""
        url = f"{self._base_url}/api/v1/project/video"
        try:
            # The deadline bounds the whole call, so a service that trickles its answer
            # cannot outlast STORYLINE_UPSTREAM_TIMEOUT.
            async with asyncio.timeout(self._deadline):
                async with self._client().post(url, json=job.payload()) as response:
                    status = response.status
                    body = await response.read()
        except TimeoutError as exc:
            raise UpstreamTimedOut from exc
        except aiohttp.ClientConnectorError as exc:
            # Nothing was sent: the job cannot exist.
            raise UpstreamRefused("could not connect") from exc
        except aiohttp.ClientError as exc:
            # Sent, but no answer came back: the job may or may not exist.
            raise UpstreamTimedOut from exc
        if status >= 400:
            log.warning("video service answered HTTP %s", status)
            raise UpstreamRefused(f"HTTP {status}")
        try:
            external_id = json.loads(body)["id"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamRefused("malformed answer") from exc
        if isinstance(external_id, int) and not isinstance(external_id, bool):
            external_id = str(external_id)
        if not isinstance(external_id, str) or not 0 < len(external_id) <= 255:
            raise UpstreamRefused("malformed answer")
        return external_id

    async def get_job(self, external_id: str) -> dict[str, Any] | None:
        """The upstream project, or None when the service does not know it (404).

        Raises UpstreamUnavailable when it cannot say right now.
        """
        url = f"{self._base_url}/api/v1/project/{quote(external_id, safe='')}"
        try:
            async with asyncio.timeout(self._deadline):
                async with self._client().get(url) as response:
                    if response.status == 404:
                        return None
                    if response.status >= 400:
                        raise UpstreamUnavailable(f"HTTP {response.status}")
                    body = json.loads(await response.read())
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise UpstreamUnavailable(type(exc).__name__) from exc
        if not isinstance(body, dict):
            raise UpstreamUnavailable("malformed answer")
        return body


class UpstreamUnavailable(Exception):
    """The service could not be asked about a job just now."""
