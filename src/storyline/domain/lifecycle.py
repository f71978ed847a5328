"""The project status machine: PENDING -> PROCESSING -> COMPLETED | FAILED.

PENDING may jump to either end. Status never moves backwards; within a
non-terminal status a report may move progress forward or change the stage.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from storyline.domain.errors import InvalidTransition

DEFAULT_FAILURE_MESSAGE = "The pipeline reported a failure without a message."


class Status(enum.Enum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (Status.COMPLETED, Status.FAILED)

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Status.PENDING: 0, Status.PROCESSING: 1, Status.COMPLETED: 2, Status.FAILED: 2}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the machine needs to know of a project's current row."""

    status: Status
    progress: int | None
    stage: str | None


@dataclass(frozen=True, slots=True)
class Report:
    status: Status
    progress: int | None = None
    stage: str | None = None
    error_message: str | None = None
    result_url: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """The new values of a project's row; ``refund`` is set on the move into FAILED."""

    status: Status
    progress: int | None
    stage: str | None
    error_message: str | None
    result_url: str | None

    @property
    def refund(self) -> bool:
        return self.status is Status.FAILED


def apply(current: Snapshot, report: Report) -> Change | None:
    """The change a report makes, or None when it is accepted but changes nothing.

    Raises InvalidTransition for a step backwards or a move away from a terminal status.
    """
    if current.status.terminal:
        if report.status is current.status:
            return None
        raise InvalidTransition(current.status.value, report.status.value)
    if report.status.rank < current.status.rank:
        raise InvalidTransition(current.status.value, report.status.value)

    if report.status is current.status:
        if (
            report.progress is not None
            and current.progress is not None
            and report.progress < current.progress
        ):
            return None  # an older report overtaken by a newer one
        progress = current.progress if report.progress is None else report.progress
        stage = current.stage if report.stage is None else report.stage
        if progress == current.progress and stage == current.stage:
            return None
        return Change(report.status, progress, stage, None, None)

    progress = _highest(current.progress, report.progress)
    if report.status is Status.COMPLETED:
        progress = 100
    stage = current.stage if report.stage is None else report.stage
    return Change(
        status=report.status,
        progress=progress,
        stage=stage,
        error_message=(report.error_message or DEFAULT_FAILURE_MESSAGE)
        if report.status is Status.FAILED
        else None,
        result_url=report.result_url if report.status is Status.COMPLETED else None,
    )


def _highest(*values: int | None) -> int | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None
