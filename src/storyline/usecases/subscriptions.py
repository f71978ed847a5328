"""projectStatus: the current state first, then every newer version, until a terminal one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator

from storyline.auth import Principal
from storyline.domain.errors import NotFound, Unauthenticated
from storyline.live.events import ProjectEvent
from storyline.persistence import projects
from storyline.persistence.batches import Batched
from storyline.persistence.database import Database
from storyline.persistence.projects import ProjectRecord
from storyline.services import Services
from storyline.usecases.access import can_see


async def watch_project(
    services: Services, principal: Principal, project_id: str
) -> AsyncGenerator[ProjectEvent, None]:
    try:
        key = uuid.UUID(project_id)
    except ValueError:
        raise NotFound from None
    # Listen before reading: a change committed in between arrives as an event and is
    # dropped only if the row read already shows it.
    async with services.broadcast.subscribe(
        str(key),
        owner=principal.user_id,
        limit=services.settings.max_subscriptions_per_user,
    ) as mailbox:
        first = await _first(services, principal, key)
        last = first.version
        yield first
        if first.status.terminal:
            return
        del first  # an idle subscription holds no project data while it waits
        event: ProjectEvent | None = None
        record: ProjectRecord | None = None
        while True:
            while (news := mailbox.news()) is not None:
                await news
            events, resync = mailbox.take()
            if resync:
                # Notifications may have been lost while the listener was away; state is not.
                record = await _read(services, key)
                if record is not None:
                    events = sorted([*events, ProjectEvent.of(record)], key=_version)
            if principal.expired:
                raise Unauthenticated("The token has expired.")
            for event in events:
                if event.version <= last:
                    continue
                if event.truncated:
                    event = await whole(services, event)
                last = event.version
                yield event
                if event.status.terminal:
                    return
            # Hold nothing while waiting for the next ones.
            events, event, record = [], None, None


async def whole(services: Services, event: ProjectEvent) -> ProjectEvent:
    """The project's row in place of a notification whose text the trigger cut to fit
    PostgreSQL's limit (the event itself, should the row be gone or, impossibly, older)."""
    record = await _read(services, uuid.UUID(event.project_id))
    return event if record is None or record.version < event.version else ProjectEvent.of(record)


async def _first(services: Services, principal: Principal, key: uuid.UUID) -> ProjectEvent:
    current = await _read(services, key)
    if current is None or not can_see(principal, current):
        raise NotFound
    return ProjectEvent.of(current)


def _version(event: ProjectEvent) -> int:
    return event.version


async def _read(services: Services, key: uuid.UUID) -> ProjectRecord | None:
    return await services.project_rows.get(key)


def project_rows(database: Database) -> Batched[uuid.UUID, ProjectRecord]:
    """What ``Services.project_rows`` reads with: the projects of many ids in one statement."""

    async def read(keys: list[uuid.UUID]) -> dict[uuid.UUID, ProjectRecord]:
        async with database.autocommit() as tx:
            return await projects.get_many(tx, project_ids=keys)

    return Batched(read)
