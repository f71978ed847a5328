"""Tx1 of generateStory in one statement: the PENDING project, its debit and its ledger row.

One round trip instead of four: generateStory's throughput is bound by the API process's
CPU, and each statement costs it far more than it costs PostgreSQL. The caller owns the
transaction; every refusal is raised so that it rolls back, and a refused reservation
writes nothing.
"""

from __future__ import annotations

from sqlalchemy import text

from storyline.domain.ledger import LedgerKind
from storyline.persistence.accounts import entry_sql
from storyline.persistence.database import DriverStatement, Transaction
from storyline.persistence.projects import NewProject, ProjectRecord, record_of


class NoAccount(Exception):
    """The user has no account yet: nothing was written."""


class BalanceTooLow(Exception):
    """The balance does not cover the charge: nothing was written."""

    def __init__(self, balance: int) -> None:
        super().__init__(balance)
        self.balance = balance


class KeyTaken(Exception):
    """The user already has a project with this idempotency key: nothing was written."""


# The debit of a charge and its ledger row: RESERVE's last two steps, and the whole of
# _CHARGE. The debit takes nothing from a balance that does not cover the charge.
_DEBIT = """
    UPDATE accounts SET balance = balance - :cost, updated_at = clock_timestamp()
    WHERE user_id = :user_id AND balance >= :cost
"""
_CHARGE_ENTRY = entry_sql(
    "debit", LedgerKind.CHARGE, amount="-CAST(:cost AS integer)", project_id="CAST(:id AS uuid)"
)

# In a data-modifying WITH, every part sees the snapshot from before the statement, so each
# step is conditioned on the one before it returning a row: no account, no project; a key
# already used, no debit; a balance too low, no ledger row (and the caller rolls the project
# back). The last SELECT always returns one row, which tells the three refusals apart.
RESERVE = text(
    f"""
    WITH project AS (
        INSERT INTO projects (id, user_id, status, credits_used, prompt, quality, aspect_ratio,
                              image_model, seed, idempotency_key, request_fingerprint)
        SELECT CAST(:id AS uuid), CAST(:user_id AS text), 'PENDING',
               CAST(:cost AS integer), CAST(:prompt AS text), CAST(:quality AS text),
               CAST(:aspect_ratio AS text), CAST(:image_model AS text), CAST(:seed AS bigint),
               CAST(:idempotency_key AS text), CAST(:request_fingerprint AS text)
        WHERE EXISTS (SELECT FROM accounts WHERE user_id = :user_id)
        ON CONFLICT (user_id, idempotency_key) DO NOTHING
        RETURNING *
    ), debit AS (
        {_DEBIT} AND EXISTS (SELECT FROM project)
        RETURNING balance
    ), charge AS (
        {_CHARGE_ENTRY}
    )
    SELECT project.*, debit.balance AS balance_after,
           (SELECT balance FROM accounts WHERE user_id = :user_id) AS balance_before
    FROM (VALUES (1)) AS one (x) LEFT JOIN project ON true LEFT JOIN debit ON true
    """  # noqa: S608 - composed of this module's SQL only (see entry_sql)
)


_RESERVE = DriverStatement.of(RESERVE)

# Only after RESERVE's debit updated no row. RESERVE's balance_before comes from the
# statement's snapshot, which may predate the charges its debit then waited for and lost
# to. A new statement sees the latest committed balance, and the row lock keeps it so until
# the transaction ends: what this reads is the balance that refuses the charge, or enough
# for it (credits granted or refunded meanwhile), and then the charge cannot be refused.
# The project row is in already, so the lock is taken in RESERVE's own order; it is the
# lock the debit's UPDATE takes (FOR UPDATE would wait on the key-share locks that other
# reservations' project rows hold on the account through their foreign key: a deadlock).
_BALANCE_NOW = DriverStatement.of(
    text("SELECT balance FROM accounts WHERE user_id = :user_id FOR NO KEY UPDATE")
)
_CHARGE = DriverStatement.of(
    text(f"WITH debit AS ({_DEBIT} RETURNING balance) {_CHARGE_ENTRY} RETURNING balance_after")
)


def parameters(project: NewProject) -> dict[str, object]:
    """RESERVE's parameters for ``project``."""
    return {
        "id": project.id,
        "user_id": project.user_id,
        "cost": project.credits_used,
        "prompt": project.prompt,
        "quality": project.quality,
        "aspect_ratio": project.aspect_ratio,
        "image_model": project.image_model,
        "seed": project.seed,
        "idempotency_key": project.idempotency_key,
        "request_fingerprint": project.request_fingerprint,
    }


async def reserve(tx: Transaction, *, project: NewProject) -> ProjectRecord:
    """Insert ``project`` as PENDING and charge its ``credits_used``, or raise NoAccount,
    KeyTaken or BalanceTooLow (with the balance that refused the charge). One statement
    unless the balance is short."""
    row = await tx.fetchrow(_RESERVE, parameters(project))
    assert row is not None, "its last SELECT always returns one row"
    if row["balance_before"] is None:
        raise NoAccount
    if row["id"] is None:
        raise KeyTaken
    if row["balance_after"] is None:
        await _charge_after_refusal(tx, project)
    return record_of(row)


async def _charge_after_refusal(tx: Transaction, project: NewProject) -> None:
    """The charge RESERVE's debit refused, taken now if the balance covers it (see
    _BALANCE_NOW), else BalanceTooLow with that balance."""
    values = parameters(project)
    balance = await tx.fetchval(_BALANCE_NOW, values)
    assert balance is not None, "accounts are never deleted"
    if balance < project.credits_used:
        raise BalanceTooLow(balance)
    charged = await tx.fetchval(_CHARGE, values)
    assert charged is not None, "the account is locked with a balance that covers the charge"
