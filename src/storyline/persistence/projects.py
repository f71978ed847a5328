"""Project rows. ``version`` and ``updated_at`` are kept by a trigger (see migrations/)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from sqlalchemy import Select, bindparam, case, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storyline.domain.lifecycle import Change, Status
from storyline.persistence.engine import DriverStatement
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


async def get(
    conn: AsyncConnection,
    *,
    project_id: uuid.UUID | None = None,
    external_id: str | None = None,
    for_update: bool = False,
) -> ProjectRecord | None:
    query = select(projects)
    if project_id is not None:
        query = query.where(projects.c.id == project_id)
    if external_id is not None:
        query = query.where(projects.c.external_id == external_id)
    return await _one(conn, query.with_for_update() if for_update else query)


async def find_by_idempotency_key(
    conn: AsyncConnection, *, user_id: str, key: str
) -> ProjectRecord | None:
    return await _one(
        conn,
        select(projects).where(projects.c.user_id == user_id, projects.c.idempotency_key == key),
    )


async def apply_change(
    conn: AsyncConnection, *, project_id: uuid.UUID, change: Change
) -> ProjectRecord:
    values: dict[str, object] = {
        "status": change.status.value,
        "progress": change.progress,
        "stage": change.stage,
        "last_report_at": func.clock_timestamp(),
    }
    if change.status is Status.FAILED:
        values["error_message"] = change.error_message
    if change.status is Status.COMPLETED:
        values["result_url"] = change.result_url
    row = (
        await conn.execute(
            update(projects).where(projects.c.id == project_id).values(values).returning(projects)
        )
    ).one()
    return ProjectRecord(**row._mapping)


async def mark_reported(conn: AsyncConnection, *, project_id: uuid.UUID) -> None:
    """The pipeline spoke: a sign of life for the sweeper, not a change (same version)."""
    await conn.execute(
        update(projects)
        .where(projects.c.id == project_id)
        .values(last_report_at=func.clock_timestamp())
    )


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


async def confirm_created(
    conn: asyncpg.Connection, *, project_id: uuid.UUID, external_id: str
) -> ProjectRecord:
    """Record the upstream id; move to PROCESSING only if no report has moved it on already.

    On asyncpg's connection (see persistence.engine.driver_connection): generateStory's
    second statement."""
    parameters = {"project_id": project_id, "new_external_id": external_id}
    row = await conn.fetchrow(_CONFIRM_CREATED.sql, *_CONFIRM_CREATED.arguments(parameters))
    return ProjectRecord(**dict(row.items()))


async def page(
    conn: AsyncConnection,
    *,
    user_id: str,
    status: Status | None,
    first: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[ProjectRecord]:
    """Newest first, keyed on (created_at, id); one row more than asked shows a next page."""
    query = select(projects).where(projects.c.user_id == user_id)
    if status is not None:
        query = query.where(projects.c.status == status.value)
    if after is not None:
        query = query.where(tuple_(projects.c.created_at, projects.c.id) < tuple_(*after))
    query = query.order_by(projects.c.created_at.desc(), projects.c.id.desc()).limit(first + 1)
    return [ProjectRecord(**row._mapping) for row in await conn.execute(query)]


async def _one(conn: AsyncConnection, query: Select[tuple[object, ...]]) -> ProjectRecord | None:
    row = (await conn.execute(query)).one_or_none()
    return None if row is None else ProjectRecord(**row._mapping)
