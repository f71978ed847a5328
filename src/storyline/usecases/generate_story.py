"""generateStory: reserve (charge + PENDING), create upstream, confirm.

No network call happens inside a transaction, and no upstream job exists that was
not paid for first.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from storyline import logs
from storyline.auth import Principal
from storyline.domain.errors import IdempotencyConflict, InsufficientCredits, UpstreamFailed
from storyline.domain.lifecycle import Report, Status
from storyline.domain.pricing import price
from storyline.domain.requests import StoryRequest
from storyline.faults import crash_point
from storyline.persistence import accounts, projects, reservations
from storyline.persistence.database import Transaction
from storyline.persistence.projects import NewProject, ProjectRecord
from storyline.services import Services
from storyline.upstream.client import JobRequest, UpstreamRefused, UpstreamTimedOut
from storyline.usecases.transitions import refunded, transition

log = logging.getLogger(__name__)


async def generate_story(
    services: Services, principal: Principal, request: StoryRequest
) -> ProjectRecord:
    fresh = True
    try:
        project = await _reserve(services, principal, request)
    except reservations.KeyTaken:  # a request with this key made its project already
        project, fresh = await _replay(services, principal, request), False
    logs.project_id.set(str(project.id))
    if not fresh:
        return project
    services.metrics.charged.inc(project.credits_used)
    log.info("charged %s credits for a new project", project.credits_used)
    # Paid for: from here on the job is created and recorded even if the client goes away
    # (a WebSocket operation cancelled, a connection dropped), which would otherwise leave
    # an upstream job with nothing to record its id.
    return await asyncio.shield(services.background.spawn(_create(services, project)))


async def _create(services: Services, project: ProjectRecord) -> ProjectRecord:
    """Create the job upstream and record the outcome (the confirm of reserve-create-confirm)."""
    crash_point("generate-after-charge")
    job = JobRequest(
        project_id=str(project.id),
        prompt=project.prompt,
        quality=project.quality,
        aspect_ratio=project.aspect_ratio,
        image_model=project.image_model,
        seed=project.seed,
    )
    try:
        external_id = await services.video.create_job(job)
    except UpstreamTimedOut:
        log.warning("video service did not answer for project %s; left PENDING", project.id)
        async with services.database.autocommit() as tx:
            current = await projects.get(tx, project_id=project.id)
        assert current is not None
        return current
    except UpstreamRefused as refused:
        return await _fail(services, project, refused.reason)
    crash_point("generate-after-upstream-accepted")

    try:
        # One statement, atomic on its own: no BEGIN and COMMIT round trips around it.
        async with services.database.autocommit() as tx:
            return await projects.confirm_created(
                tx, project_id=project.id, external_id=external_id
            )
    except projects.ExternalIdTaken:
        # The service's defect, not the user's: the job it named is another project's, so
        # nothing would ever report on this one. As definite as any other refusal.
        return await _fail(services, project, "it answered the job id of another project")


async def _reserve(
    services: Services, principal: Principal, request: StoryRequest
) -> ProjectRecord:
    """Tx1: the project as PENDING and its charge. A key this user has used already is
    refused by the reservation itself (KeyTaken), which writes nothing."""
    new = NewProject(
        id=uuid.uuid4(),
        user_id=principal.user_id,
        credits_used=price(request.quality),
        prompt=request.prompt,
        quality=request.quality.value,
        aspect_ratio=request.aspect_ratio.value,
        image_model=request.image_model,
        seed=request.seed,
        idempotency_key=request.idempotency_key,
        request_fingerprint=request.fingerprint(),
    )
    try:
        async with services.database.transaction() as tx:
            return await _reserve_in(tx, new)
    except reservations.NoAccount:
        # First use: the account, its sign-up grant and the charge in one transaction.
        async with services.database.transaction() as tx:
            await accounts.ensure_account(
                tx, user_id=new.user_id, signup_credits=services.settings.signup_credits
            )
            return await _reserve_in(tx, new)


async def _reserve_in(tx: Transaction, new: NewProject) -> ProjectRecord:
    try:
        project = await reservations.reserve(tx, project=new)
    except reservations.BalanceTooLow as low:
        raise InsufficientCredits(required=new.credits_used, balance=low.balance) from None
    crash_point("generate-before-charge-commit")
    return project


async def _replay(services: Services, principal: Principal, request: StoryRequest) -> ProjectRecord:
    assert request.idempotency_key is not None
    async with services.database.autocommit() as tx:
        existing = await projects.find_by_idempotency_key(
            tx, user_id=principal.user_id, key=request.idempotency_key
        )
    assert existing is not None, "the conflicting insert has committed"
    return _same_request(existing, request)


def _same_request(existing: ProjectRecord, request: StoryRequest) -> ProjectRecord:
    if existing.request_fingerprint != request.fingerprint():
        raise IdempotencyConflict
    return existing


async def _fail(services: Services, project: ProjectRecord, reason: str) -> ProjectRecord:
    """FAILED + REFUND after a definite refusal, unless a report already ended the project."""
    message = f"The video service did not take the job: {reason}."
    async with services.database.transaction() as tx:
        locked = await projects.find(tx, project_id=project.id, external_id=None, locked=True)
        assert locked is not None
        if Status(locked.status).terminal:
            return locked
        failed = await transition(tx, locked, Report(Status.FAILED, error_message=message))
    services.metrics.refunded.inc(refunded(locked, failed))
    log.warning("video service refused project %s (%s); refunded", project.id, reason)
    raise UpstreamFailed(str(project.id), reason)
