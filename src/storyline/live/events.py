"""A project's live state, as the trigger announces it and as subscribers receive it."""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime

from storyline.domain.lifecycle import Status
from storyline.persistence.projects import ProjectRecord


@dataclass(frozen=True, slots=True)
class ProjectEvent:
    project_id: str
    status: Status
    version: int
    progress: int | None
    stage: str | None
    error_message: str | None
    result_url: str | None
    updated_at: datetime
    # Payload texts rendered from this event, by selection key: shared by all its watchers.
    rendered: dict[Hashable, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, record: ProjectRecord) -> ProjectEvent:
        return cls(
            project_id=str(record.id),
            status=Status(record.status),
            version=record.version,
            progress=record.progress,
            stage=record.stage,
            error_message=record.error_message,
            result_url=record.result_url,
            updated_at=record.updated_at,
        )

    @classmethod
    def parse(cls, payload: str) -> ProjectEvent:
        """From the JSON of the ``storyline_project_notify`` trigger; raises ValueError."""
        try:
            fields = json.loads(payload)
            return cls(
                project_id=str(fields["id"]),
                status=Status(fields["status"]),
                version=int(fields["version"]),
                progress=fields["progress"],
                stage=fields["stage"],
                error_message=fields["error_message"],
                result_url=fields["result_url"],
                updated_at=datetime.fromisoformat(fields["updated_at"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a project notification: {exc}") from exc
