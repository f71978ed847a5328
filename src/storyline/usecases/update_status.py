"""updateStatus: the pipeline's report, applied over the version of the row it was decided
from.

The pipeline reports many times a second, and each report used to take the row's lock in a
transaction: BEGIN, SELECT … FOR UPDATE, UPDATE, COMMIT, four round trips, each a turn of
the event loop among every other request and watcher. Here the row is read, the change
decided, and written by one UPDATE that applies only if the row's version is still the one
read; when another writer got there first, nothing is written and the report is decided
again from the new row. Only the move into FAILED, whose refund must commit with it, takes
a transaction.
"""

from __future__ import annotations

from storyline import logs
from storyline.domain import lifecycle
from storyline.domain.errors import NotFound
from storyline.domain.requests import StatusReport
from storyline.persistence import projects
from storyline.persistence.projects import ProjectRecord
from storyline.services import Services
from storyline.usecases.transitions import change_of, refunded, write


async def update_status(services: Services, report: StatusReport) -> ProjectRecord:
    """The caller has been checked to hold the pipeline (or admin) role."""
    while True:  # each turn that writes nothing lost to a write that moved the row on
        async with services.database.autocommit() as tx:
            project = await projects.find(
                tx, project_id=report.project_id, external_id=report.external_id
            )
            if project is None:
                raise NotFound
            logs.project_id.set(str(project.id))
            change = change_of(project, report.report)  # raises InvalidTransition
            if change is None:
                if not lifecycle.Status(project.status).terminal:
                    # A sign of life for the sweeper, not a change (the same version).
                    await projects.mark_reported(tx, project_id=project.id)
                return project
            if not change.refund:
                updated = await write(tx, project, change)  # one statement: atomic alone
        if change.refund:
            async with services.database.transaction() as tx:
                updated = await write(tx, project, change)
        if updated is not None:
            services.metrics.refunded.inc(refunded(project, updated))
            return updated
