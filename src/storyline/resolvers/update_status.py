"""updateStatus: the pipeline's report, applied as one serialised transition."""

from __future__ import annotations

import logging

import asyncpg

from storyline import logs
from storyline.domain import lifecycle
from storyline.domain.errors import NotFound
from storyline.domain.requests import StatusReport
from storyline.persistence import accounts, projects
from storyline.persistence.engine import driver_connection
from storyline.persistence.projects import ProjectRecord
from storyline.services import Services

log = logging.getLogger(__name__)


async def update_status(services: Services, report: StatusReport) -> ProjectRecord:
    """The caller has been checked to hold the pipeline (or admin) role."""
    async with driver_connection(services.engine) as conn, conn.transaction():
        project = await projects.lock(
            conn, project_id=report.project_id, external_id=report.external_id
        )
        if project is None:
            raise NotFound
        logs.project_id.set(str(project.id))
        updated = await transition(conn, project, report.report)
        if updated is project and not lifecycle.Status(project.status).terminal:
            await projects.mark_reported(conn, project_id=project.id)  # a heartbeat
    services.metrics.refunded.inc(refunded(project, updated))
    return updated


def refunded(before: ProjectRecord, after: ProjectRecord) -> int:
    """The credits a committed transition from ``before`` to ``after`` gave back."""
    moved_into_failed = after.status == "FAILED" and before.status != "FAILED"
    return before.credits_used if moved_into_failed else 0


async def transition(
    conn: asyncpg.Connection, project: ProjectRecord, report: lifecycle.Report
) -> ProjectRecord:
    """Apply a report to a row locked FOR UPDATE; refunds in the move into FAILED.

    On asyncpg's connection, in the caller's transaction (a SQLAlchemy caller passes
    ``persistence.engine.driver_of(conn)``, once its transaction has begun).

    Raises InvalidTransition; returns the row unchanged when the report changes nothing.
    """
    current = lifecycle.Snapshot(lifecycle.Status(project.status), project.progress, project.stage)
    change = lifecycle.apply(current, report)
    if change is None:
        return project
    updated = await projects.apply_change(conn, project_id=project.id, change=change)
    if change.refund:
        await accounts.refund(
            conn,
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
