"""accountChanges: the caller's balance and projects, first as they are, then as they change.

The contract's rules (account-changes.graphql), and how they hold here:
- first events: the newest ledger entry with its balance, then each project that is not
  terminal, or each that changed after ``since``, read in one snapshot;
- per project, version order and no duplicates: notifications come in commit order, and
  those the snapshot already saw are dropped (persistence/snapshots.py); balances never go
  back: ledger ids grow in commit order within an account;
- after a listener outage the balance and every project that changed after the last
  snapshot are read again, in a new snapshot that then takes its place;
- the server never completes it (an expired token ends it with an error).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from itertools import chain

from storyline.auth import Principal
from storyline.domain.errors import BadUserInput, Unauthenticated
from storyline.live.events import AccountEvent, BalanceEvent, ProjectEvent
from storyline.persistence import accounts
from storyline.persistence.snapshots import AccountState, Snapshot, account_state
from storyline.services import Services
from storyline.usecases.subscriptions import whole

# How many projects a watcher remembers having sent since its last snapshot, to send none
# of them again if the listener is lost. Past it the oldest is forgotten: it could be sent
# twice, but only after such an outage, and never older than what was sent.
RECENT_LIMIT = 1024


def check_since(since: datetime | None) -> datetime | None:
    """``since`` as an aware time in UTC (a time without an offset is UTC)."""
    if since is None:
        return None
    try:
        return since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
    except OverflowError:
        raise BadUserInput("since", "out of range.") from None


async def watch_account(
    services: Services, principal: Principal, since: datetime | None
) -> AsyncGenerator[AccountEvent, None]:
    since = check_since(since)
    user_id = principal.user_id
    # Listen before reading: a change committed in between arrives as an event too, and
    # the snapshot tells which of those it already saw.
    async with services.broadcast.subscribe_account(
        user_id, limit=services.settings.max_subscriptions_per_user
    ) as mailbox:
        await _ensure_account(services, user_id)
        state = await _read(services, user_id, since=since)
        sent = _Sent(state.snapshot)
        fresh = sent.read(state)  # read in the watcher's snapshot: every one is to be sent
        del state
        events: list[AccountEvent] = []  # notified: sent unless the snapshot saw them
        event: AccountEvent | None = None
        while True:
            for event in chain(fresh, filter(sent.admits, events)):
                if isinstance(event, ProjectEvent) and event.truncated:
                    event = await whole(services, event)
                    sent.note(event)
                yield event
            # An idle subscription holds no account data while it waits.
            fresh, events, event = [], [], None
            while (news := mailbox.news()) is not None:
                await news
            events, resync = mailbox.take()
            if principal.expired:
                raise Unauthenticated("The token has expired.")
            if resync:
                # Notifications may have been lost while the listener was away; rows are not.
                # Read first: the notified events are then held to the new snapshot.
                fresh = sent.read(await _read(services, user_id, after=sent.snapshot), again=True)


async def _ensure_account(services: Services, user_id: str) -> None:
    """The account, created on first use (with its sign-up grant), as ``me`` does."""
    async with services.database.transaction() as tx:
        await accounts.ensure_account(
            tx, user_id=user_id, signup_credits=services.settings.signup_credits
        )


class _Sent:
    """What one watcher has sent, in as little memory as that can be told in."""

    __slots__ = ("entry_id", "recent", "snapshot")

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot  # of the last read: every change it saw has been sent
        self.entry_id = 0  # the newest ledger entry sent
        # project -> version, sent live since that read (None while there is none)
        self.recent: dict[str, int] | None = None

    def read(self, state: AccountState, *, again: bool = False) -> list[AccountEvent]:
        """The events of a state read in a new snapshot, which becomes the watcher's: the
        balance, and each project read (``again``: but those already sent live)."""
        events: list[AccountEvent] = []
        if state.entry is not None:
            self.entry_id = max(self.entry_id, state.entry.id)
            events.append(BalanceEvent(state.entry))
        recent = self.recent or {}
        for record in state.projects:
            if not again or recent.get(str(record.id), 0) < record.version:
                events.append(ProjectEvent.of(record))
        self.snapshot = state.snapshot
        self.recent = None
        return events

    def admits(self, event: AccountEvent) -> bool:
        """Whether a notified ``event`` is news to this watcher; if so it counts as sent."""
        if isinstance(event, BalanceEvent):
            if event.entry.id <= self.entry_id:
                return False
            self.entry_id = event.entry.id
            return True
        if self.snapshot.saw(event.xid):
            return False  # the last read showed this version or a newer one
        if self.recent is not None and event.version <= self.recent.get(event.project_id, 0):
            return False  # a row read in place of a cut notification was newer already
        # Notifications come in commit order: otherwise this version is newer than any sent.
        self.note(event)
        return True

    def note(self, event: ProjectEvent) -> None:
        """Count ``event``, sent live, as its project's newest state sent."""
        if self.recent is None:
            self.recent = {}
        self.recent.pop(event.project_id, None)
        if len(self.recent) >= RECENT_LIMIT:
            del self.recent[next(iter(self.recent))]
        self.recent[event.project_id] = event.version


async def _read(
    services: Services,
    user_id: str,
    *,
    since: datetime | None = None,
    after: Snapshot | None = None,
) -> AccountState:
    async with services.database.transaction(snapshot=True) as tx:
        return await account_state(tx, user_id=user_id, since=since, after=after)
