"""Balances and the ledger. Every balance change writes its ledger row in the same transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Integer,
    Text,
    Uuid,
    bindparam,
    cast,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from storyline.domain.ledger import LedgerKind
from storyline.domain.lifecycle import Status
from storyline.persistence.database import DriverStatement, Transaction
from storyline.persistence.tables import accounts, ledger, projects

# GraphQL's Int is 32-bit; a balance must stay representable.
MAX_BALANCE = 2**31 - 1


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


_CREATE = DriverStatement.of(
    pg_insert(accounts)
    .values(user_id=bindparam("user_id"), balance=bindparam("balance"))
    .on_conflict_do_nothing(index_elements=[accounts.c.user_id])
    .returning(accounts.c.balance)
)
_BALANCE = DriverStatement.of(
    select(accounts.c.balance).where(accounts.c.user_id == bindparam("user_id"))
)


async def ensure_account(tx: Transaction, *, user_id: str, signup_credits: int) -> None:
    """Create the account on first use, with its sign-up grant as the first ledger row."""
    created = await tx.fetchval(_CREATE, {"user_id": user_id, "balance": signup_credits})
    if created is not None and signup_credits > 0:
        await _append(
            tx,
            user_id=user_id,
            kind=LedgerKind.GRANT,
            amount=signup_credits,
            balance_after=signup_credits,
            reason="sign-up credits",
        )


async def balance_of(tx: Transaction, *, user_id: str) -> int | None:
    balance: int | None = await tx.fetchval(_BALANCE, {"user_id": user_id})
    return balance


# The credit and its ledger row in one statement: part of a transition, on updateStatus's
# hot path.
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
    tx: Transaction, *, user_id: str, project_id: uuid.UUID, amount: int, reason: str
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
    balance = await tx.fetchval(_REFUND, values)
    assert balance is not None, "refunds always fit (see grant), and accounts outlive projects"


# Credits held by projects that may still be refunded count against the ceiling.
_HELD = (
    select(func.coalesce(func.sum(projects.c.credits_used), 0))
    .where(
        projects.c.user_id == bindparam("user_id"),
        or_(
            projects.c.status == Status.PENDING.value,
            projects.c.status == Status.PROCESSING.value,
        ),
    )
    .scalar_subquery()
)
_AMOUNT = bindparam("amount", type_=Integer)
# In bigint: the sum may pass int4's range, which is what is being refused.
_ADD = DriverStatement.of(
    update(accounts)
    .where(
        accounts.c.user_id == bindparam("user_id"),
        cast(accounts.c.balance, BigInteger) + cast(_AMOUNT, BigInteger) <= MAX_BALANCE - _HELD,
    )
    .values(balance=accounts.c.balance + _AMOUNT, updated_at=func.clock_timestamp())
    .returning(accounts.c.balance)
)
_APPEND = DriverStatement.of(
    insert(ledger).values(
        user_id=bindparam("user_id"),
        kind=bindparam("kind"),
        amount=bindparam("amount"),
        balance_after=bindparam("balance_after"),
        project_id=bindparam("project_id", type_=Uuid),
        reason=bindparam("reason", type_=Text),
    )
)
_LEDGER_PAGE = {
    before: DriverStatement.of(
        select(ledger)
        .where(
            ledger.c.user_id == bindparam("user_id"),
            *([ledger.c.id < bindparam("before_id")] if before else []),
        )
        .order_by(ledger.c.id.desc())
        .limit(bindparam("limit", type_=Integer))
    )
    for before in (False, True)
}
_LEDGER_FIELDS = tuple(LedgerRecord.__slots__)


async def grant(tx: Transaction, *, user_id: str, amount: int, reason: str) -> int:
    """Add credits; raises BalanceTooHigh when the balance, plus the credits held by projects
    that may still be refunded, would leave GraphQL's Int range. (Charges are taken by
    persistence.reservations, refunds by REFUND above.)"""
    balance: int | None = await tx.fetchval(_ADD, {"user_id": user_id, "amount": amount})
    if balance is None:
        raise BalanceTooHigh
    await _append(
        tx,
        user_id=user_id,
        kind=LedgerKind.GRANT,
        amount=amount,
        balance_after=balance,
        reason=reason,
    )
    return balance


async def ledger_page(
    tx: Transaction, *, user_id: str, first: int, before_id: int | None
) -> list[LedgerRecord]:
    """Newest first; one row more than asked tells whether another page follows."""
    values = {"user_id": user_id, "limit": first + 1, "before_id": before_id}
    rows = await tx.fetch(_LEDGER_PAGE[before_id is not None], values)
    return [LedgerRecord(**{name: row[name] for name in _LEDGER_FIELDS}) for row in rows]


async def _append(
    tx: Transaction,
    *,
    user_id: str,
    kind: LedgerKind,
    amount: int,
    balance_after: int,
    project_id: uuid.UUID | None = None,
    reason: str | None = None,
) -> None:
    values = {
        "user_id": user_id,
        "kind": kind.value,
        "amount": amount,
        "balance_after": balance_after,
        "project_id": project_id,
        "reason": reason,
    }
    await tx.execute(_APPEND, values)
