"""Input types, checked into domain requests."""

from __future__ import annotations

from typing import TypeVar

import strawberry

from storyline.domain.requests import StatusReport, StoryRequest
from storyline.schema.enums import AspectRatio, Quality, Status

T = TypeVar("T")


@strawberry.input
class GenerateStoryInput:
    prompt: str
    quality: Quality = Quality.HD
    aspect_ratio: AspectRatio = AspectRatio.LANDSCAPE_16_9
    image_model: str = "comfyui/flux"
    seed: int | None = strawberry.UNSET
    idempotency_key: str | None = strawberry.UNSET

    def checked(self) -> StoryRequest:
        return StoryRequest.checked(
            prompt=self.prompt,
            quality=self.quality,
            aspect_ratio=self.aspect_ratio,
            image_model=self.image_model,
            seed=_given(self.seed),
            idempotency_key=_given(self.idempotency_key),
        )


@strawberry.input
class UpdateStatusInput:
    project_id: strawberry.ID | None = strawberry.UNSET
    external_id: str | None = strawberry.UNSET
    status: Status
    progress: int | None = strawberry.UNSET
    stage: str | None = strawberry.UNSET
    error_message: str | None = strawberry.UNSET
    result_url: str | None = strawberry.UNSET

    def checked(self) -> StatusReport:
        return StatusReport.checked(
            project_id=_given(self.project_id),
            external_id=_given(self.external_id),
            status=self.status,
            progress=_given(self.progress),
            stage=_given(self.stage),
            error_message=_given(self.error_message),
            result_url=_given(self.result_url),
        )


def _given(value: T | None) -> T | None:
    """UNSET (argument left out) and null both mean: not given."""
    return None if value is strawberry.UNSET else value
