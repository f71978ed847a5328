"""An account's state read inside one snapshot, and which later changes that snapshot saw.

accountChanges registers its watcher before reading (so no change falls between the two)
and then meets, among its notifications, changes the read already showed. Each project
notification carries the id of the transaction that wrote it (migration 0004), so the
snapshot of the read tells them apart exactly: what it saw was sent by the read, what it
did not see is newer. The same test, in SQL, finds the projects that changed after a
snapshot when notifications may have been lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, DateTime, Text, bindparam, cast, func, or_, select, text

from storyline.domain.lifecycle import Status
from storyline.persistence.accounts import LedgerRecord, ledger_page
from storyline.persistence.database import DriverStatement, Transaction
from storyline.persistence.projects import ProjectRecord, record_of
from storyline.persistence.tables import projects


@dataclass(frozen=True, slots=True)
class Snapshot:
    """PostgreSQL's ``pg_snapshot``: which transactions had committed when it was taken.
    (Small on purpose: every idle accountChanges watcher keeps one.)"""

    xmin: int  # every transaction below it had ended
    xmax: int  # no transaction from it on had ended
    running: tuple[int, ...]  # those between the two still in progress (mostly none)

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        xmin, xmax, running = text.split(":")
        return cls(int(xmin), int(xmax), tuple(int(x) for x in running.split(",") if x))

    @property
    def text(self) -> str:
        """As PostgreSQL writes it, to give back to it."""
        return f"{self.xmin}:{self.xmax}:{','.join(map(str, self.running))}"

    def saw(self, xid: int | None) -> bool:
        """Whether the transaction ``xid`` had committed for this snapshot (PostgreSQL's
        ``pg_visible_in_snapshot``, for a transaction that did commit). None: a row
        written before xids were kept, older than any snapshot."""
        if xid is None or xid < self.xmin:
            return True
        return xid < self.xmax and xid not in self.running


@dataclass(frozen=True, slots=True)
class AccountState:
    snapshot: Snapshot
    entry: LedgerRecord | None  # the newest ledger entry; None for an account without one
    projects: list[ProjectRecord]  # oldest change first


_SNAPSHOT = DriverStatement.of(select(cast(func.pg_current_snapshot(), Text)))


def _changes(condition: ColumnElement[bool]) -> DriverStatement:
    query = (
        select(projects)
        .where(projects.c.user_id == bindparam("user_id"), condition)
        .order_by(projects.c.updated_at, projects.c.id)
    )
    return DriverStatement.of(query)


_CURRENT = _changes(
    or_(*(projects.c.status == status.value for status in Status if not status.terminal))
)
_SINCE = _changes(projects.c.updated_at > bindparam("since", type_=DateTime(timezone=True)))
_AFTER = _changes(
    projects.c.last_xid.is_not(None)
    & text(
        "NOT pg_visible_in_snapshot(projects.last_xid::text::xid8, CAST(:snapshot AS pg_snapshot))"
    ).bindparams(bindparam("snapshot", type_=Text))
)


async def account_state(
    tx: Transaction,
    *,
    user_id: str,
    since: datetime | None = None,
    after: Snapshot | None = None,
) -> AccountState:
    """The account's newest ledger entry and the projects to show, in ``tx``'s snapshot
    (``Database.transaction(snapshot=True)``): those changed after the snapshot ``after``;
    else those changed after ``since``; else those not terminal."""
    snapshot = Snapshot.parse(await tx.fetchval(_SNAPSHOT))
    newest = await ledger_page(tx, user_id=user_id, first=1, before_id=None)
    values: dict[str, object] = {"user_id": user_id}
    if after is not None:
        statement, values["snapshot"] = _AFTER, after.text
    elif since is not None:
        statement, values["since"] = _SINCE, since
    else:
        statement = _CURRENT
    rows = await tx.fetch(statement, values)
    return AccountState(snapshot, newest[0] if newest else None, [record_of(r) for r in rows])
