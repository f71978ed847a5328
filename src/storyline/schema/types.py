"""Output types, converted from persistence records."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, TypeAlias

import strawberry

from storyline.live.events import SHOWN, AccountEvent, BalanceEvent, ProjectEvent
from storyline.persistence.accounts import LedgerRecord
from storyline.persistence.projects import ProjectRecord
from storyline.schema.context import Info
from storyline.schema.enums import AspectRatio, LedgerKind, Quality, Status
from storyline.usecases import queries


@strawberry.type
class Project:
    id: strawberry.ID
    external_id: str | None
    status: Status
    credits_used: int
    error_message: str | None
    progress: int | None
    stage: str | None
    result_url: str | None
    prompt: str
    quality: Quality
    aspect_ratio: AspectRatio
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: ProjectRecord) -> Project:
        return cls(
            id=strawberry.ID(str(record.id)),
            external_id=record.external_id,
            status=Status(record.status),
            credits_used=record.credits_used,
            error_message=record.error_message,
            progress=record.progress,
            stage=record.stage,
            result_url=record.result_url,
            prompt=record.prompt,
            quality=Quality(record.quality),
            aspect_ratio=AspectRatio(record.aspect_ratio),
            version=record.version,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


@strawberry.type
class LedgerEntry:
    id: strawberry.ID
    kind: LedgerKind
    amount: int
    balance_after: int
    project_id: strawberry.ID | None
    reason: str | None
    created_at: datetime

    @classmethod
    def of(cls, record: LedgerRecord) -> LedgerEntry:
        return cls(
            id=strawberry.ID(str(record.id)),
            kind=LedgerKind(record.kind),
            amount=record.amount,
            balance_after=record.balance_after,
            project_id=None if record.project_id is None else strawberry.ID(str(record.project_id)),
            reason=record.reason,
            created_at=record.created_at,
        )


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class ProjectEdge:
    cursor: str
    node: Project


@strawberry.type
class ProjectConnection:
    edges: list[ProjectEdge]
    page_info: PageInfo

    @classmethod
    def of(cls, page: queries.Page[ProjectRecord]) -> ProjectConnection:
        edges = [ProjectEdge(cursor=cursor, node=Project.of(row)) for cursor, row in page.items]
        return cls(edges=edges, page_info=_page_info(page))


@strawberry.type
class LedgerEdge:
    cursor: str
    node: LedgerEntry


@strawberry.type
class LedgerConnection:
    edges: list[LedgerEdge]
    page_info: PageInfo

    @classmethod
    def of(cls, page: queries.Page[LedgerRecord]) -> LedgerConnection:
        edges = [LedgerEdge(cursor=cursor, node=LedgerEntry.of(row)) for cursor, row in page.items]
        return cls(edges=edges, page_info=_page_info(page))


@strawberry.type
class Account:
    user_id: strawberry.ID
    balance: int

    @strawberry.field
    async def ledger(
        self, info: Info, first: int = 20, after: str | None = strawberry.UNSET
    ) -> LedgerConnection:
        page = await queries.ledger_page(
            info.context.services, user_id=self.user_id, first=first, after=after or None
        )
        return LedgerConnection.of(page)


def _page_info(page: queries.Page[ProjectRecord] | queries.Page[LedgerRecord]) -> PageInfo:
    return PageInfo(
        has_next_page=page.has_next,
        end_cursor=page.items[-1][0] if page.items else None,
    )


@strawberry.type
class ProjectStatusEvent:
    """The live event as clients see it: the fields of live/events.py's declaration that
    have a GraphQL name, and only those (tests/test_live_event.py holds them equal)."""

    project_id: strawberry.ID
    status: Status
    version: int
    progress: int | None
    stage: str | None
    error_message: str | None
    result_url: str | None
    updated_at: datetime

    @classmethod
    def of(cls, event: ProjectEvent) -> ProjectStatusEvent:
        return cls(**{name: getattr(event, name) for name in SHOWN})


@strawberry.type
class BalanceChange:
    """One ledger entry of the caller's, with the balance right after it."""

    balance: int
    entry: LedgerEntry

    @classmethod
    def of(cls, event: BalanceEvent) -> BalanceChange:
        return cls(balance=event.entry.balance_after, entry=LedgerEntry.of(event.entry))


AccountChange: TypeAlias = Annotated[
    ProjectStatusEvent | BalanceChange, strawberry.union("AccountChange")
]


def account_change(event: AccountEvent) -> ProjectStatusEvent | BalanceChange:
    """An accountChanges event as clients see it."""
    if isinstance(event, BalanceEvent):
        return BalanceChange.of(event)
    return ProjectStatusEvent.of(event)
