"""updateStatus: the pipeline's report, applied as one serialised transition."""

from __future__ import annotations

from storyline import logs
from storyline.domain import lifecycle
from storyline.domain.errors import NotFound
from storyline.domain.requests import StatusReport
from storyline.persistence import projects
from storyline.persistence.projects import ProjectRecord
from storyline.services import Services
from storyline.usecases.transitions import refunded, transition


async def update_status(services: Services, report: StatusReport) -> ProjectRecord:
    """The caller has been checked to hold the pipeline (or admin) role."""
    async with services.database.transaction() as tx:
        project = await projects.lock(
            tx, project_id=report.project_id, external_id=report.external_id
        )
        if project is None:
            raise NotFound
        logs.project_id.set(str(project.id))
        updated = await transition(tx, project, report.report)
        if updated is project and not lifecycle.Status(project.status).terminal:
            await projects.mark_reported(tx, project_id=project.id)  # a heartbeat
    services.metrics.refunded.inc(refunded(project, updated))
    return updated
