"""Balances and the ledger. Every balance change writes its ledger row in the same transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Text,
    Uuid,
    bindparam,
    cast,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from storyline.domain.lifecycle import Status
from storyline.persistence.engine import DriverStatement
from storyline.persistence.tables import accounts, ledger, projects

# GraphQL's Int is 32-bit; a balance must stay representable.
MAX_BALANCE = 2**31 - 1

LedgerKind = Literal["GRANT", "CHARGE", "REFUND"]


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    id: int
    user_id: str
    kind: str
    amount: int
    balance_after: int
    project_id: uuid.UUID | None
    reason: str | None
    created_at: datetime


class BalanceTooHigh(Exception):
    pass


async def ensure_account(conn: AsyncConnection, *, user_id: str, signup_credits: int) -> None:
    """Create the account on first use, with its sign-up grant as the first ledger row."""
    created = await conn.scalar(
        pg_insert(accounts)
        .values(user_id=user_id, balance=signup_credits)
        .on_conflict_do_nothing(index_elements=[accounts.c.user_id])
        .returning(accounts.c.balance)
    )
    if created is not None and signup_credits > 0:
        await _append(
            conn,
            user_id=user_id,
            kind="GRANT",
            amount=signup_credits,
            balance_after=signup_credits,
            reason="sign-up credits",
        )


async def balance_of(conn: AsyncConnection, *, user_id: str) -> int | None:
    return await conn.scalar(select(accounts.c.balance).where(accounts.c.user_id == user_id))


# The credit and its ledger row in one statement, on asyncpg's connection like the rest of a
# transition (see resolvers/update_status).
_REFUND = DriverStatement.of(
    text(
        """
        WITH credit AS (
            UPDATE accounts SET balance = balance + :amount, updated_at = clock_timestamp()
            WHERE user_id = :user_id
            RETURNING balance
        )
        INSERT INTO ledger (user_id, kind, amount, balance_after, project_id, reason)
        SELECT :user_id, 'REFUND', :amount, credit.balance, :project_id, :reason FROM credit
        RETURNING balance_after
        """
    ).bindparams(
        bindparam("user_id", type_=Text),
        bindparam("amount", type_=Integer),
        bindparam("project_id", type_=Uuid),
        bindparam("reason", type_=Text),
    )
)


async def refund(
    conn: asyncpg.Connection, *, user_id: str, project_id: uuid.UUID, amount: int, reason: str
) -> None:
    """Return a project's charge. The (project, kind) unique key refuses a second refund.

    Never refused for the balance: grants leave room for every charge still held.
    """
    values = {
        "user_id": user_id,
        "amount": amount,
        "project_id": project_id,
        "reason": reason[:500],
    }
    balance = await _REFUND.fetchval(conn, values)
    assert balance is not None, "refunds always fit (see grant), and accounts outlive projects"


async def grant(conn: AsyncConnection, *, user_id: str, amount: int, reason: str) -> int:
    """Add credits; raises BalanceTooHigh when the balance, plus the credits held by projects
    that may still be refunded, would leave GraphQL's Int range."""
    held = (
        select(func.coalesce(func.sum(projects.c.credits_used), 0))
        .where(
            projects.c.user_id == user_id,
            projects.c.status.in_((Status.PENDING.value, Status.PROCESSING.value)),
        )
        .scalar_subquery()
    )
    balance = await _add(conn, user_id=user_id, amount=amount, ceiling=MAX_BALANCE - held)
    if balance is None:
        raise BalanceTooHigh
    await _append(
        conn, user_id=user_id, kind="GRANT", amount=amount, balance_after=balance, reason=reason
    )
    return balance


async def ledger_page(
    conn: AsyncConnection, *, user_id: str, first: int, before_id: int | None
) -> list[LedgerRecord]:
    """Newest first; one row more than asked tells whether another page follows."""
    query = select(ledger).where(ledger.c.user_id == user_id)
    if before_id is not None:
        query = query.where(ledger.c.id < before_id)
    rows = await conn.execute(query.order_by(ledger.c.id.desc()).limit(first + 1))
    return [LedgerRecord(**row._mapping) for row in rows]


async def _add(
    conn: AsyncConnection,
    *,
    user_id: str,
    amount: int,
    ceiling: ColumnElement[int],
) -> int | None:
    """Credit ``amount``: the new balance, or None when it would pass ``ceiling``.
    (Charges are taken by persistence.reservations, refunds by REFUND above.)"""
    # In bigint: the sum may pass int4's range, which is what is being refused.
    guard = cast(accounts.c.balance, BigInteger) + amount <= ceiling
    balance: int | None = await conn.scalar(
        update(accounts)
        .where(accounts.c.user_id == user_id, guard)
        .values(balance=accounts.c.balance + amount, updated_at=func.clock_timestamp())
        .returning(accounts.c.balance)
    )
    return balance


async def _append(
    conn: AsyncConnection,
    *,
    user_id: str,
    kind: LedgerKind,
    amount: int,
    balance_after: int,
    project_id: uuid.UUID | None = None,
    reason: str | None = None,
) -> None:
    await conn.execute(
        insert(ledger).values(
            user_id=user_id,
            kind=kind,
            amount=amount,
            balance_after=balance_after,
            project_id=project_id,
            reason=reason,
        )
    )
