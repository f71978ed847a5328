"""Project rows. ``version`` and ``updated_at`` are kept by a trigger (see migrations/)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from sqlalchemy import DateTime, Integer, Uuid, any_, bindparam, case, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY

from storyline.domain.lifecycle import Change, Status
from storyline.persistence.database import DriverStatement, Transaction, mapper
from storyline.persistence.tables import projects


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    id: uuid.UUID
    user_id: str
    external_id: str | None
    status: str
    credits_used: int
    error_message: str | None
    progress: int | None
    stage: str | None
    result_url: str | None
    prompt: str
    quality: str
    aspect_ratio: str
    image_model: str
    seed: int | None
    idempotency_key: str | None
    request_fingerprint: str
    version: int
    created_at: datetime
    updated_at: datetime
    last_report_at: datetime | None
    last_xid: int | None  # the transaction that wrote this version (None: before 0004)


# The project in an asyncpg row (which may carry more columns than the project's).
record_of = mapper(ProjectRecord)


@dataclass(frozen=True, slots=True)
class NewProject:
    id: uuid.UUID
    user_id: str
    credits_used: int
    prompt: str
    quality: str
    aspect_ratio: str
    image_model: str
    seed: int | None
    idempotency_key: str | None
    request_fingerprint: str


_GET = DriverStatement.of(select(projects).where(projects.c.id == bindparam("project_id")))
_GET_MANY = DriverStatement.of(
    select(projects).where(projects.c.id == any_(bindparam("project_ids", type_=ARRAY(Uuid))))
)
_BY_KEY = DriverStatement.of(
    select(projects).where(
        projects.c.user_id == bindparam("user_id"), projects.c.idempotency_key == bindparam("key")
    )
)


async def get(tx: Transaction, *, project_id: uuid.UUID) -> ProjectRecord | None:
    row = await tx.fetchrow(_GET, {"project_id": project_id})
    return None if row is None else record_of(row)


async def get_many(
    tx: Transaction, *, project_ids: list[uuid.UUID]
) -> dict[uuid.UUID, ProjectRecord]:
    """The projects of these ids that exist, by id."""
    rows = await tx.fetch(_GET_MANY, {"project_ids": project_ids})
    return {record.id: record for record in map(record_of, rows)}


async def find_by_idempotency_key(
    tx: Transaction, *, user_id: str, key: str
) -> ProjectRecord | None:
    row = await tx.fetchrow(_BY_KEY, {"user_id": user_id, "key": key})
    return None if row is None else record_of(row)


# updateStatus's statements: the pipeline reports progress many times a second, and these
# are its database work.
def _find(key: str, *, locked: bool) -> DriverStatement:
    query = select(projects).where(projects.c[key] == bindparam(key))
    return DriverStatement.of(query.with_for_update() if locked else query)


_FIND = {
    (key, locked): _find(key, locked=locked)
    for key in ("id", "external_id")
    for locked in (False, True)
}
# A change sets the error message only on the move into FAILED, the result only into
# COMPLETED; it is written only over the version it was decided from (None: the row has
# moved on since it was read).
_APPLY = {
    extra: DriverStatement.of(
        update(projects)
        .where(
            projects.c.id == bindparam("project_id"),
            projects.c.version == bindparam("read_version"),
        )
        .values(
            status=bindparam("new_status"),
            progress=bindparam("new_progress"),
            stage=bindparam("new_stage"),
            last_report_at=func.clock_timestamp(),
            **({extra: bindparam(f"new_{extra}")} if extra else {}),
        )
        .returning(*projects.c)
    )
    for extra in ("", "error_message", "result_url")
}
_MARK_REPORTED = DriverStatement.of(
    update(projects)
    .where(projects.c.id == bindparam("project_id"))
    .values(last_report_at=func.clock_timestamp())
)


async def find(
    tx: Transaction,
    *,
    project_id: uuid.UUID | None,
    external_id: str | None,
    locked: bool = False,
) -> ProjectRecord | None:
    """The project named by exactly one of the two ids; ``locked``: FOR UPDATE, until
    ``tx`` ends."""
    if (project_id is None) == (external_id is None):
        raise ValueError("name the project by exactly one id")
    key, value = ("id", project_id) if project_id is not None else ("external_id", external_id)
    row = await tx.fetchrow(_FIND[key, locked], {key: value})
    return None if row is None else record_of(row)


async def apply_change(
    tx: Transaction, *, project: ProjectRecord, change: Change
) -> ProjectRecord | None:
    """Write ``change``, decided from ``project`` as read, over that version of the row;
    None when the row has moved on since (never when ``tx`` holds its lock)."""
    extra = {Status.FAILED: "error_message", Status.COMPLETED: "result_url"}.get(change.status, "")
    values: dict[str, object] = {
        "project_id": project.id,
        "read_version": project.version,
        "new_status": change.status.value,
        "new_progress": change.progress,
        "new_stage": change.stage,
        "new_error_message": change.error_message,
        "new_result_url": change.result_url,
    }
    row = await tx.fetchrow(_APPLY[extra], values)
    return None if row is None else record_of(row)


async def mark_reported(tx: Transaction, *, project_id: uuid.UUID) -> None:
    """The pipeline spoke: a sign of life for the sweeper, not a change (same version)."""
    await tx.execute(_MARK_REPORTED, {"project_id": project_id})


_CONFIRM_CREATED = DriverStatement.of(
    update(projects)
    .where(projects.c.id == bindparam("project_id"))
    .values(
        external_id=bindparam("new_external_id"),
        status=case(
            (projects.c.status == Status.PENDING.value, Status.PROCESSING.value),
            else_=projects.c.status,
        ),
    )
    .returning(*projects.c)
)


class ExternalIdTaken(Exception):
    """Another project has this upstream id already: nothing was written."""


async def confirm_created(
    tx: Transaction, *, project_id: uuid.UUID, external_id: str
) -> ProjectRecord:
    """Record the upstream id; move to PROCESSING only if no report has moved it on already.
    Raises ExternalIdTaken when the id is another project's. generateStory's second
    statement, atomic on its own."""
    parameters = {"project_id": project_id, "new_external_id": external_id}
    try:
        row = await tx.fetchrow(_CONFIRM_CREATED, parameters)
    except asyncpg.UniqueViolationError as violation:
        if violation.constraint_name != "projects_external_id_key":
            raise
        raise ExternalIdTaken from None
    assert row is not None, "the project was reserved and projects are never deleted"
    return record_of(row)


def _page_query(*, by_status: bool, after: bool) -> DriverStatement:
    query = select(projects).where(projects.c.user_id == bindparam("user_id"))
    if by_status:
        query = query.where(projects.c.status == bindparam("status"))
    if after:
        position = tuple_(
            bindparam("after_created_at", type_=DateTime(timezone=True)),
            bindparam("after_id", type_=Uuid),
        )
        query = query.where(tuple_(projects.c.created_at, projects.c.id) < position)
    query = query.order_by(projects.c.created_at.desc(), projects.c.id.desc())
    return DriverStatement.of(query.limit(bindparam("limit", type_=Integer)))


_PAGE = {
    (by_status, after): _page_query(by_status=by_status, after=after)
    for by_status in (False, True)
    for after in (False, True)
}


async def page(
    tx: Transaction,
    *,
    user_id: str,
    status: Status | None,
    first: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[ProjectRecord]:
    """Newest first, keyed on (created_at, id); one row more than asked shows a next page."""
    values: dict[str, object] = {"user_id": user_id, "limit": first + 1}
    if status is not None:
        values["status"] = status.value
    if after is not None:
        values["after_created_at"], values["after_id"] = after
    rows = await tx.fetch(_PAGE[status is not None, after is not None], values)
    return [record_of(row) for row in rows]
