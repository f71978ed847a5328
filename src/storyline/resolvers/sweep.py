"""The sweeper: resolves projects that nobody else will.

- PENDING longer than ``pending_timeout``: the upstream call's outcome was never
  recorded (a timeout, or a crash between the charge and the confirmation). With an
  upstream id the video service is asked; without one the project is FAILED and refunded.
- PROCESSING with no report for ``processing_timeout``: FAILED and refunded.

Safe in every instance at once: rows are claimed with ``FOR UPDATE SKIP LOCKED`` and every
transition re-checks the row under its lock, so each project is resolved once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from storyline import logs
from storyline.domain.lifecycle import Report, Status
from storyline.persistence import projects
from storyline.persistence.tables import projects as projects_table
from storyline.resolvers.update_status import refunded, transition
from storyline.services import Services

log = logging.getLogger(__name__)

BATCH = 100


async def sweep(services: Services) -> Counter[str]:
    """One pass; counts what it did by action."""
    actions: Counter[str] = Counter()
    settings = services.settings
    stalled = await _claim(
        services, Status.PROCESSING, timedelta(seconds=settings.processing_timeout)
    )
    for project_id in stalled:
        message = (
            f"No report from the pipeline for {settings.processing_timeout:g} seconds; "
            "the credits were refunded."
        )
        if await _resolve(
            services, project_id, Status.PROCESSING, Report(Status.FAILED, error_message=message)
        ):
            actions["processing_timed_out"] += 1

    waiting = await _claim(services, Status.PENDING, timedelta(seconds=settings.pending_timeout))
    for project_id, external_id in waiting.items():
        report = await _reconcile(services, external_id)
        if report is None:
            actions["pending_unresolved"] += 1
            continue
        if await _resolve(services, project_id, Status.PENDING, report):
            actions[f"pending_to_{report.status.value.lower()}"] += 1
    for action, count in actions.items():
        services.metrics.sweeps.labels(action).inc(count)
    return actions


async def run_sweeper(services: Services, *, interval: float) -> None:
    """The background loop of every instance."""
    while True:
        try:
            actions = await sweep(services)
            if actions:
                log.info("sweep: %s", dict(actions))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sweep failed; retrying in %s s", interval)
        await asyncio.sleep(interval)


async def _claim(services: Services, status: Status, age: timedelta) -> dict[uuid.UUID, str | None]:
    """Projects (id -> upstream id) in ``status`` unchanged for ``age``, not locked elsewhere."""
    table = projects_table
    query = (
        select(table.c.id, table.c.external_id)
        .where(table.c.status == status.value, table.c.updated_at < func.now() - age)
        .order_by(table.c.updated_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    async with services.engine.begin() as conn:
        return {row.id: row.external_id for row in await conn.execute(query)}


async def _resolve(
    services: Services, project_id: uuid.UUID, expected: Status, report: Report
) -> bool:
    """Apply the report if the project is still in ``expected``; False if someone else moved it."""
    bound = logs.project_id.set(str(project_id))
    try:
        return await _apply(services, project_id, expected, report)
    finally:
        logs.project_id.reset(bound)


async def _apply(
    services: Services, project_id: uuid.UUID, expected: Status, report: Report
) -> bool:
    async with services.engine.begin() as conn:
        current = await projects.get(conn, project_id=project_id, for_update=True)
        if current is None or current.status != expected.value:
            return False
        updated = await transition(conn, current, report)
    services.metrics.refunded.inc(refunded(current, updated))
    log.warning(
        "sweeper moved project %s from %s to %s", project_id, expected.value, updated.status
    )
    return updated.version != current.version


async def _reconcile(services: Services, external_id: str | None) -> Report | None:
    """What the video service says of a job; None when it cannot be asked right now."""
    if external_id is None:
        return Report(
            Status.FAILED,
            error_message="The video service never confirmed the job; the credits were refunded.",
        )
    try:
        job = await services.video.get_job(external_id)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == httpx.codes.NOT_FOUND:
            return Report(
                Status.FAILED,
                error_message="The video service has no such job; the credits were refunded.",
            )
        return None
    except (httpx.HTTPError, ValueError):
        return None
    return _report_of(job)


def _report_of(job: dict[str, Any]) -> Report:
    statuses = [task.get("status") for task in job.get("tasks") or [] if isinstance(task, dict)]
    if any(status == "error" for status in statuses):
        return Report(Status.FAILED, error_message="The video service reported a failed task.")
    if statuses and all(status == "completed" for status in statuses):
        return Report(Status.COMPLETED, result_url=_url(job))
    return Report(Status.PROCESSING)


def _url(job: dict[str, Any]) -> str | None:
    for key in ("result_url", "video_url", "url"):
        value = job.get(key)
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return value
    return None
