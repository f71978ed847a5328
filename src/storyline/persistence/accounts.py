"""Balances and the ledger. Every balance change writes its ledger row in the same transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, Text, Uuid, bindparam, select, text

from storyline.domain.ledger import LedgerKind
from storyline.domain.lifecycle import Status
from storyline.persistence.database import DriverStatement, Transaction, mapper
from storyline.persistence.tables import accounts, ledger

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


def entry_sql(
    change: str, kind: LedgerKind, *, amount: str, project_id: str = "NULL", reason: str = "NULL"
) -> str:
    """SQL: the INSERT of the ledger row that records ``change``, a data-modifying CTE of
    that name which returns the account's new ``balance`` (``amount`` and the others are SQL
    expressions; ``:user_id`` names the account).

    The one way a ledger row is written: by the statement that changes the balance it
    records, from what that change returned, so that no balance moves without its row and
    ``balance_after`` is the balance the change left. No row when the change changed none.
    The statements that use it are composed of SQL written in persistence/ only (values go
    in as bound parameters, never into the text), hence their ``noqa: S608``.
    """
    return f"""
        INSERT INTO ledger (user_id, kind, amount, balance_after, project_id, reason)
        SELECT :user_id, '{kind.value}', {amount}, {change}.balance, {project_id}, {reason}
        FROM {change}
    """  # noqa: S608


# The ledger row only for a created account (the CTE returns nothing on a conflict).
_CREATE = DriverStatement.of(
    text(
        f"""
        WITH created AS (
            INSERT INTO accounts (user_id, balance) VALUES (:user_id, :balance)
            ON CONFLICT (user_id) DO NOTHING
            RETURNING balance
        )
        {entry_sql("created", LedgerKind.GRANT, amount=":balance", reason="'sign-up credits'")}
        WHERE :balance > 0
        """  # noqa: S608
    ).bindparams(bindparam("user_id", type_=Text), bindparam("balance", type_=Integer))
)
_BALANCE = DriverStatement.of(
    select(accounts.c.balance).where(accounts.c.user_id == bindparam("user_id"))
)


async def ensure_account(tx: Transaction, *, user_id: str, signup_credits: int) -> None:
    """Create the account on first use, with its sign-up grant as the first ledger row."""
    await tx.execute(_CREATE, {"user_id": user_id, "balance": signup_credits})


async def balance_of(tx: Transaction, *, user_id: str) -> int | None:
    balance: int | None = await tx.fetchval(_BALANCE, {"user_id": user_id})
    return balance


# Credits added, by a refund (part of a transition, on updateStatus's hot path) or a grant.
_CREDIT = """
    UPDATE accounts SET balance = balance + :amount, updated_at = clock_timestamp()
    WHERE user_id = :user_id
"""
_REFUND_ENTRY = entry_sql(
    "credit", LedgerKind.REFUND, amount=":amount", project_id=":project_id", reason=":reason"
)
_REFUND = DriverStatement.of(
    text(
        f"WITH credit AS ({_CREDIT} RETURNING balance) {_REFUND_ENTRY} RETURNING balance_after"
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


# Credits held by projects that may still be refunded count against the ceiling; the sum
# is taken in bigint, where it may pass int4's range, which is what is being refused.
_GRANT = DriverStatement.of(
    text(
        f"""
        WITH credit AS (
            {_CREDIT}
              AND CAST(balance AS bigint) + CAST(:amount AS bigint) <= {MAX_BALANCE} - (
                  SELECT coalesce(sum(credits_used), 0) FROM projects
                  WHERE user_id = :user_id
                    AND status IN ('{Status.PENDING.value}', '{Status.PROCESSING.value}')
              )
            RETURNING balance
        )
        {entry_sql("credit", LedgerKind.GRANT, amount=":amount", reason=":reason")}
        RETURNING balance_after
        """  # noqa: S608
    ).bindparams(
        bindparam("user_id", type_=Text),
        bindparam("amount", type_=Integer),
        bindparam("reason", type_=Text),
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
_ledger_record = mapper(LedgerRecord)


async def grant(tx: Transaction, *, user_id: str, amount: int, reason: str) -> int:
    """Add credits; raises BalanceTooHigh when the balance, plus the credits held by projects
    that may still be refunded, would leave GraphQL's Int range. (Charges are taken by
    persistence.reservations, refunds by REFUND above.)"""
    values = {"user_id": user_id, "amount": amount, "reason": reason}
    balance: int | None = await tx.fetchval(_GRANT, values)
    if balance is None:
        raise BalanceTooHigh
    return balance


async def ledger_page(
    tx: Transaction, *, user_id: str, first: int, before_id: int | None
) -> list[LedgerRecord]:
    """Newest first; one row more than asked tells whether another page follows."""
    values = {"user_id": user_id, "limit": first + 1, "before_id": before_id}
    rows = await tx.fetch(_LEDGER_PAGE[before_id is not None], values)
    return [_ledger_record(row) for row in rows]
