"""The sweeper: resolves projects that nobody else will.

- PENDING longer than ``pending_timeout``: the upstream call's outcome was never
  recorded (a timeout, or a crash between the charge and the confirmation). With an
  upstream id the video service is asked; without one the project is FAILED and refunded.
- PROCESSING with no report for ``processing_timeout``: FAILED and refunded.

Safe in every instance at once: each candidate is locked (``FOR UPDATE SKIP LOCKED``) and
re-checked under the lock, still in its status and still silent, before it is settled, so
each project is resolved once, and never one that spoke up in the meantime.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from storyline import logs
from storyline.domain.lifecycle import Report, Status
from storyline.persistence import stale
from storyline.services import Services
from storyline.upstream.client import UpstreamUnavailable
from storyline.usecases.transitions import refunded, transition

log = logging.getLogger(__name__)

BATCH = 100


async def sweep(services: Services) -> Counter[str]:
    """One pass; counts what it did by action. A project that cannot be settled is logged
    and left for the next pass; it never stops the others."""
    actions: Counter[str] = Counter()
    settings = services.settings
    silent = timedelta(seconds=settings.processing_timeout)
    message = (
        f"No report from the pipeline for {settings.processing_timeout:g} seconds; "
        "the credits were refunded."
    )
    for project_id in await _stale(services, Status.PROCESSING, silent):
        report = Report(Status.FAILED, error_message=message)
        if await _settle(services, project_id, Status.PROCESSING, silent, report):
            actions["processing_timed_out"] += 1

    waiting = timedelta(seconds=settings.pending_timeout)
    for project_id, external_id in (await _stale(services, Status.PENDING, waiting)).items():
        outcome = await _reconcile(services, external_id)
        if outcome is None:
            actions["pending_unresolved"] += 1
        elif await _settle(services, project_id, Status.PENDING, waiting, outcome):
            actions[f"pending_to_{outcome.status.value.lower()}"] += 1
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


async def _stale(services: Services, status: Status, age: timedelta) -> dict[uuid.UUID, str | None]:
    """Projects (id -> upstream id) in ``status`` with no sign of life for ``age``.

    Only candidates: each is re-checked under its row lock before anything is done.
    """
    async with services.database.autocommit() as tx:
        return await stale.candidates(tx, status=status, age=age, limit=BATCH)


async def _settle(
    services: Services, project_id: uuid.UUID, expected: Status, age: timedelta, report: Report
) -> bool:
    """Apply the report if the project is still in ``expected`` and still silent for ``age``;
    False if it moved, spoke up, is locked by someone settling it, or could not be settled."""
    bound = logs.project_id.set(str(project_id))
    try:
        return await _apply(services, project_id, expected, age, report)
    except Exception:
        log.exception("sweeper could not settle project %s; will retry", project_id)
        return False
    finally:
        logs.project_id.reset(bound)


async def _apply(
    services: Services, project_id: uuid.UUID, expected: Status, age: timedelta, report: Report
) -> bool:
    async with services.database.transaction() as tx:
        current = await stale.lock_if_stale(tx, project_id=project_id, status=expected, age=age)
        if current is None:
            return False
        updated = await transition(tx, current, report)
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
    except UpstreamUnavailable:
        return None
    if job is None:
        return Report(
            Status.FAILED,
            error_message="The video service has no such job; the credits were refunded.",
        )
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
