"""A report applied to a project: shared by updateStatus, generateStory's refusal path and
the sweeper."""

from __future__ import annotations

import logging

from storyline.domain import lifecycle
from storyline.persistence import accounts, projects
from storyline.persistence.database import Transaction
from storyline.persistence.projects import ProjectRecord

log = logging.getLogger(__name__)


def refunded(before: ProjectRecord, after: ProjectRecord) -> int:
    """The credits a committed transition from ``before`` to ``after`` gave back."""
    moved_into_failed = after.status == "FAILED" and before.status != "FAILED"
    return before.credits_used if moved_into_failed else 0


def change_of(project: ProjectRecord, report: lifecycle.Report) -> lifecycle.Change | None:
    """What ``report`` changes in ``project`` as read (None: nothing); raises
    InvalidTransition."""
    current = lifecycle.Snapshot(lifecycle.Status(project.status), project.progress, project.stage)
    return lifecycle.apply(current, report)


async def write(
    tx: Transaction, project: ProjectRecord, change: lifecycle.Change
) -> ProjectRecord | None:
    """Write ``change`` over the version of ``project`` it was decided from, with the refund
    of a move into FAILED (``tx`` must then be a transaction: both or neither). None, and
    nothing written, when the row has moved on since it was read."""
    updated = await projects.apply_change(tx, project=project, change=change)
    if updated is None:
        return None
    if change.refund:
        await accounts.refund(
            tx,
            user_id=project.user_id,
            project_id=project.id,
            amount=project.credits_used,
            reason=change.error_message or lifecycle.DEFAULT_FAILURE_MESSAGE,
        )
    log.info(
        "project %s %s -> %s (version %s)",
        project.id,
        project.status,
        updated.status,
        updated.version,
    )
    return updated


async def transition(
    tx: Transaction, project: ProjectRecord, report: lifecycle.Report
) -> ProjectRecord:
    """Apply a report to a row locked FOR UPDATE in ``tx``; refunds in the move into FAILED.

    Raises InvalidTransition; returns the row unchanged when the report changes nothing.
    """
    change = change_of(project, report)
    if change is None:
        return project
    updated = await write(tx, project, change)
    assert updated is not None, "the row is locked: its version cannot have moved"
    return updated
