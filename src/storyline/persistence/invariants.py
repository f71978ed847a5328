"""The money invariants, as queries anyone can run: each returns the rows that break one."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

CHECKS: dict[str, str] = {
    "balance equals the sum of the ledger": """
        SELECT a.user_id, a.balance, coalesce(sum(l.amount), 0) AS ledger_sum
        FROM accounts a LEFT JOIN ledger l ON l.user_id = a.user_id
        GROUP BY a.user_id, a.balance
        HAVING a.balance <> coalesce(sum(l.amount), 0)
    """,
    "balance is never negative": "SELECT user_id, balance FROM accounts WHERE balance < 0",
    "each ledger row's balance_after is the running sum": """
        SELECT id, user_id, balance_after, running FROM (
            SELECT id, user_id, balance_after,
                   sum(amount) OVER (PARTITION BY user_id ORDER BY id) AS running
            FROM ledger
        ) AS l WHERE balance_after <> running
    """,
    "every project was charged its price once": """
        SELECT p.id, p.credits_used, count(l.id) AS charges, sum(l.amount) AS charged
        FROM projects p LEFT JOIN ledger l ON l.project_id = p.id AND l.kind = 'CHARGE'
        GROUP BY p.id, p.credits_used
        HAVING count(l.id) <> 1 OR sum(l.amount) <> -p.credits_used
    """,
    "a project is refunded iff it is FAILED, and then in full": """
        SELECT p.id, p.status, count(l.id) AS refunds, sum(l.amount) AS refunded
        FROM projects p LEFT JOIN ledger l ON l.project_id = p.id AND l.kind = 'REFUND'
        GROUP BY p.id, p.status, p.credits_used
        HAVING count(l.id) <> (CASE WHEN p.status = 'FAILED' THEN 1 ELSE 0 END)
            OR (count(l.id) = 1 AND sum(l.amount) <> p.credits_used)
    """,
    "ledger rows of a project belong to its owner": """
        SELECT l.id FROM ledger l JOIN projects p ON p.id = l.project_id
        WHERE l.user_id <> p.user_id
    """,
}


async def violations(conn: AsyncConnection) -> dict[str, list[tuple[object, ...]]]:
    """Every broken invariant with (up to ten of) the rows that break it; empty when all hold."""
    found: dict[str, list[tuple[object, ...]]] = {}
    for name, query in CHECKS.items():
        rows = (await conn.execute(text(f"{query} LIMIT 10"))).all()
        if rows:
            found[name] = [tuple(row) for row in rows]
    return found
