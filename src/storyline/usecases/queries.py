"""Reads: the caller's account and ledger, one project, a page of projects."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from storyline.auth import Principal
from storyline.domain.errors import BadUserInput
from storyline.domain.lifecycle import Status
from storyline.domain.requests import check_page_size
from storyline.persistence import accounts, projects
from storyline.persistence.accounts import LedgerRecord
from storyline.persistence.projects import ProjectRecord
from storyline.services import Services
from storyline.usecases.access import can_see

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[tuple[str, T]]  # (cursor, item)
    has_next: bool


async def account_balance(services: Services, principal: Principal) -> int:
    """The caller's balance, creating the account (with its sign-up grant) on first use."""
    async with services.database.transaction() as tx:
        await accounts.ensure_account(
            tx, user_id=principal.user_id, signup_credits=services.settings.signup_credits
        )
        balance = await accounts.balance_of(tx, user_id=principal.user_id)
    assert balance is not None
    return balance


async def ledger_page(
    services: Services, *, user_id: str, first: int, after: str | None
) -> Page[LedgerRecord]:
    check_page_size(first)
    before_id = None if after is None else int(_decode(after, "l"))
    async with services.database.autocommit() as tx:
        rows = await accounts.ledger_page(tx, user_id=user_id, first=first, before_id=before_id)
    return Page([(_encode("l", str(row.id)), row) for row in rows[:first]], len(rows) > first)


async def project(
    services: Services, principal: Principal, project_id: str
) -> ProjectRecord | None:
    try:
        key = uuid.UUID(project_id)
    except ValueError:
        return None  # no project has such an id
    async with services.database.autocommit() as tx:
        record = await projects.get(tx, project_id=key)
    return record if record is not None and can_see(principal, record) else None


async def project_page(
    services: Services,
    principal: Principal,
    *,
    status: Status | None,
    first: int,
    after: str | None,
) -> Page[ProjectRecord]:
    check_page_size(first)
    position = None if after is None else _project_position(after)
    async with services.database.autocommit() as tx:
        rows = await projects.page(
            tx, user_id=principal.user_id, status=status, first=first, after=position
        )
    items = [(_encode("p", f"{row.created_at.isoformat()}|{row.id}"), row) for row in rows[:first]]
    return Page(items, len(rows) > first)


_NOT_OURS = "is not a cursor this API issued for this list (pass back a cursor it returned)"
_LEDGER_ID = re.compile("[0-9]{1,18}")  # ASCII digits only, and within bigint


def _project_position(cursor: str) -> tuple[datetime, uuid.UUID]:
    created, _, key = _decode(cursor, "p").partition("|")
    try:
        moment, project_id = datetime.fromisoformat(created), uuid.UUID(key)
        # The database compares instants: one without an offset names none, and one whose
        # offset carries it outside years 1-9999 in UTC has no datetime to be sent as.
        if moment.tzinfo is None:
            raise ValueError(created)
        return moment.astimezone(UTC), project_id
    except (ValueError, OverflowError):
        raise BadUserInput("after", _NOT_OURS) from None


def _encode(kind: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def _decode(cursor: str, kind: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadUserInput("after", _NOT_OURS) from None
    prefix, _, value = text.partition(":")
    if prefix != kind or not value or (kind == "l" and not _LEDGER_ID.fullmatch(value)):
        raise BadUserInput("after", _NOT_OURS)
    return value
