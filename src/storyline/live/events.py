"""Live events as the triggers announce them and subscribers receive them: a project's
state (ProjectEvent) and a ledger entry with the balance after it (BalanceEvent).

The event's wire shape is declared once, here: each attribute of ProjectEvent says, in its
``wire(...)`` metadata, the key the ``storyline_project_notify`` trigger writes it under,
its name in GraphQL's ProjectStatusEvent (None: clients never see it) and how its JSON
value is read. ``FIELDS`` gathers them. The parser below reads the payload through it,
schema/types.py's ProjectStatusEvent is filled from it, and tests hold that type and the
trigger's payload (SQL in the migrations, which never import app code) to it. The
ledger's notification is its row, column for column: LedgerRecord is its declaration.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, get_type_hints

from storyline.domain.lifecycle import Status
from storyline.persistence.accounts import LedgerRecord
from storyline.persistence.projects import ProjectRecord

_WIRE = "storyline.wire"


@dataclass(frozen=True, slots=True)
class WireField:
    name: str  # ProjectEvent's attribute
    type: Any  # its Python type
    key: str  # the trigger's JSON key
    graphql: str | None  # ProjectStatusEvent's field, if clients see it
    read: Callable[[Any], Any]  # the attribute's value from the JSON value


def _as_sent(value: Any) -> Any:
    return value


def wire(
    key: str, *, graphql: str | None, read: Callable[[Any], Any] = _as_sent
) -> Mapping[str, WireField]:
    """The metadata of one field of the live event (see the module's docstring)."""
    # name and type are the attribute's own: filled in by _declared().
    return {_WIRE: WireField(name="", type=None, key=key, graphql=graphql, read=read)}


@dataclass(frozen=True, slots=True)
class ProjectEvent:
    project_id: str = field(metadata=wire("id", graphql="projectId", read=str))
    # The owner, whose accountChanges watchers receive the event too.
    user_id: str = field(metadata=wire("user_id", graphql=None, read=str))
    # The transaction that wrote this version: a watcher that read its first state in a
    # snapshot drops the events that snapshot already saw (persistence/snapshots.py).
    xid: int | None = field(metadata=wire("xid", graphql=None))
    status: Status = field(metadata=wire("status", graphql="status", read=Status))
    version: int = field(metadata=wire("version", graphql="version", read=int))
    progress: int | None = field(metadata=wire("progress", graphql="progress"))
    stage: str | None = field(metadata=wire("stage", graphql="stage"))
    error_message: str | None = field(metadata=wire("error_message", graphql="errorMessage"))
    result_url: str | None = field(metadata=wire("result_url", graphql="resultUrl"))
    # Whether the trigger cut a text to keep the notification under PostgreSQL's limit.
    truncated: bool = field(metadata=wire("truncated", graphql=None, read=bool))
    updated_at: datetime = field(
        metadata=wire("updated_at", graphql="updatedAt", read=datetime.fromisoformat)
    )
    # Payload texts rendered from this event, by selection key: shared by all its watchers.
    rendered: dict[Hashable, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, record: ProjectRecord) -> ProjectEvent:
        return cls(
            project_id=str(record.id),
            user_id=record.user_id,
            xid=record.last_xid,
            status=Status(record.status),
            version=record.version,
            progress=record.progress,
            stage=record.stage,
            error_message=record.error_message,
            result_url=record.result_url,
            truncated=False,
            updated_at=record.updated_at,
        )

    @property
    def key(self) -> str:
        """What a newer event replaces in an account's mailbox: this project's state."""
        return self.project_id

    @property
    def position(self) -> int:
        """Order among the events of the same key."""
        return self.version

    @classmethod
    def parse(cls, payload: str) -> ProjectEvent:
        """From the JSON of the ``storyline_project_notify`` trigger; raises ValueError."""
        try:
            sent = json.loads(payload)
            return cls(**{wired.name: wired.read(sent[wired.key]) for wired in FIELDS})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a project notification: {exc}") from exc


def _declared() -> tuple[WireField, ...]:
    hints = get_type_hints(ProjectEvent)
    return tuple(
        replace(attribute.metadata[_WIRE], name=attribute.name, type=hints[attribute.name])
        for attribute in fields(ProjectEvent)
        if _WIRE in attribute.metadata
    )


FIELDS = _declared()
# ProjectStatusEvent's fields, by ProjectEvent's attribute names.
SHOWN = tuple(wired.name for wired in FIELDS if wired.graphql is not None)


# The ledger's notification is its row, key for key (``storyline_ledger_notify``, 0004):
# how each JSON value is read back into LedgerRecord's attribute of the same name.
_LEDGER_READ: Mapping[str, Callable[[Any], Any]] = {
    "id": int,
    "user_id": str,
    "kind": str,
    "amount": int,
    "balance_after": int,
    "project_id": lambda sent: None if sent is None else uuid.UUID(sent),
    "reason": _as_sent,
    "created_at": datetime.fromisoformat,
}
LEDGER_KEYS = tuple(LedgerRecord.__slots__)
assert set(_LEDGER_READ) == set(LEDGER_KEYS), "every ledger column is read back"


@dataclass(frozen=True, slots=True)
class BalanceEvent:
    """A ledger entry and the balance right after it: accountChanges' BalanceChange."""

    entry: LedgerRecord
    rendered: dict[Hashable, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def user_id(self) -> str:
        return self.entry.user_id

    @property
    def key(self) -> str:
        return BALANCE_KEY

    @property
    def position(self) -> int:
        # Entries of one account are written under its row lock: ids grow in commit order.
        return self.entry.id

    @classmethod
    def parse(cls, payload: str) -> BalanceEvent:
        """From the JSON of the ``storyline_ledger_notify`` trigger; raises ValueError."""
        try:
            sent = json.loads(payload)
            return cls(LedgerRecord(**{key: _LEDGER_READ[key](sent[key]) for key in LEDGER_KEYS}))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a ledger notification: {exc}") from exc


# The balance's key in an account's mailbox: never a project id (those are UUIDs).
BALANCE_KEY = ""

AccountEvent = ProjectEvent | BalanceEvent
