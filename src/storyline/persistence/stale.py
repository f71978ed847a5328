"""Projects that have shown no sign of life for a while: the sweeper's statements.

A PENDING project's last sign of life is its last update; a PROCESSING one's is the
pipeline's last report too (a heartbeat that changed nothing still counts).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Integer, Interval, bindparam, func, select

from storyline.domain.lifecycle import Status
from storyline.persistence.database import DriverStatement, Transaction
from storyline.persistence.projects import ProjectRecord, record_of
from storyline.persistence.tables import projects

SWEPT = (Status.PENDING, Status.PROCESSING)


def _silent_since(status: Status) -> ColumnElement[datetime]:
    """When a project in ``status`` last showed a sign of life."""
    if status is Status.PROCESSING:
        return func.coalesce(projects.c.last_report_at, projects.c.updated_at)
    return projects.c.updated_at


def _silent_for(status: Status) -> ColumnElement[bool]:
    return _silent_since(status) < func.now() - bindparam("age", type_=Interval)


_CANDIDATES = {
    status: DriverStatement.of(
        select(projects.c.id, projects.c.external_id)
        .where(projects.c.status == status.value, _silent_for(status))
        .order_by(_silent_since(status))
        .limit(bindparam("limit", type_=Integer))
    )
    for status in SWEPT
}
_LOCK_IF_STALE = {
    status: DriverStatement.of(
        select(projects)
        .where(
            projects.c.id == bindparam("project_id"),
            projects.c.status == status.value,
            _silent_for(status),
        )
        .with_for_update(skip_locked=True)
    )
    for status in SWEPT
}


async def candidates(
    tx: Transaction, *, status: Status, age: timedelta, limit: int
) -> dict[uuid.UUID, str | None]:
    """Projects (id -> upstream id) in ``status`` with no sign of life for ``age``, the
    longest silent first. Only candidates: re-check each with ``lock_if_stale``."""
    rows = await tx.fetch(_CANDIDATES[status], {"age": age, "limit": limit})
    return {row["id"]: row["external_id"] for row in rows}


async def lock_if_stale(
    tx: Transaction, *, project_id: uuid.UUID, status: Status, age: timedelta
) -> ProjectRecord | None:
    """The project, locked FOR UPDATE, if it is still in ``status`` and still silent for
    ``age``; None if it moved on, spoke up, or is locked by someone settling it."""
    row = await tx.fetchrow(_LOCK_IF_STALE[status], {"project_id": project_id, "age": age})
    return None if row is None else record_of(row)
