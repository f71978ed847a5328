"""Live events for this process: one broadcaster backend, routed by project and by owner.

The hub composes a broadcaster backend (persistence/listener.py's PostgresListener), not
broadcaster's ``Broadcast``, whose subscribe, listener loop and disconnect have the defects
design.md ("Live status") lists. What it does where the stock class does not:
- a watcher is registered synchronously, before anything is awaited: the stock
  check-then-await in ``subscribe`` loses one of two concurrent first subscribers;
- each watcher has a mailbox of at most ``MAILBOX_LIMIT`` events that collapses to the
  newest state, where the stock one has a queue that a slow client grows without end;
- a payload that cannot be routed is logged and routing goes on, where the stock listener
  task dies silently on the first error;
- each payload is parsed once per event, not once per subscriber, and routing is a dict
  lookup by project id;
- when the backend reconnects, every watcher is told to re-read its row;
- ``disconnect`` is safe after a failed ``connect``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Generic, TypeVar

from storyline.domain.errors import StorylineError
from storyline.live.events import AccountEvent, BalanceEvent, ProjectEvent
from storyline.persistence.listener import LEDGER_CHANNEL, PostgresListener

log = logging.getLogger(__name__)

MAILBOX_LIMIT = 32


class TooManySubscriptions(StorylineError):
    code = "BAD_USER_INPUT"

    def __init__(self, limit: int) -> None:
        # No ``field``: the limit counts the user's subscriptions of every field.
        super().__init__(
            f"At most {limit} live subscriptions per user; close one first.", limit=limit
        )


class _Inbox:
    """What one subscriber has yet to send, and the wake-up when there is news. A future
    is made only while the subscriber waits (an asyncio.Event would carry a deque of its
    own, always): there is one inbox per live subscription."""

    __slots__ = ("_waiter", "resync")

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None
        self.resync = False

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def request_resync(self) -> None:
        self.resync = True
        self._wake()

    def _has_news(self) -> bool:
        raise NotImplementedError

    def news(self) -> asyncio.Future[None] | None:
        """None when there is news to ``take`` (or the state to re-read); else a future
        done when there may be: await it, then ask again. A future, awaited by the watcher
        itself, adds nothing to what an idle watcher holds, where a coroutine would add
        its frame."""
        if self._has_news() or self.resync:
            return None
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter

    def _resynced(self) -> bool:
        self._waiter = None
        resync, self.resync = self.resync, False
        return resync


class Mailbox(_Inbox):
    """One project's pending events in version order, bounded."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[ProjectEvent] = []

    def _has_news(self) -> bool:
        return bool(self._pending)

    def offer(self, event: ProjectEvent) -> None:
        if self._pending and event.version <= self._pending[-1].version:
            return  # a duplicate, or older than what is already waiting
        if len(self._pending) >= MAILBOX_LIMIT:
            # Status is state, not a log: a client this far behind gets the newest state.
            self._pending.clear()
        self._pending.append(event)
        self._wake()

    def take(self) -> tuple[list[ProjectEvent], bool]:
        """The pending events, and whether the row must be re-read (see ``news``)."""
        events, self._pending = self._pending, []
        return events, self._resynced()


class AccountMailbox(_Inbox):
    """One account's pending events: the newest state of each of its projects that changed
    and the newest balance, in the order they last changed. It holds at most one event
    per project, so it never grows beyond what its subscriber has yet to send."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        super().__init__()
        self._pending: dict[str, AccountEvent] = {}

    def _has_news(self) -> bool:
        return bool(self._pending)

    def offer(self, event: AccountEvent) -> None:
        waiting = self._pending.get(event.key)
        if waiting is not None:
            if waiting.position >= event.position:
                return  # a duplicate, or older than what is already waiting
            del self._pending[event.key]  # the newer state goes where changes are newest
        self._pending[event.key] = event
        self._wake()

    def take(self) -> tuple[list[AccountEvent], bool]:
        """The pending events, and whether the account must be re-read (see ``news``)."""
        events = list(self._pending.values())
        self._pending.clear()
        return events, self._resynced()


InboxT = TypeVar("InboxT", bound=_Inbox)


class ProjectBroadcast:
    """The process's hub: ``connect``/``disconnect`` around the app's lifetime,
    ``subscribe(project_id, ...)`` for each projectStatus watcher and
    ``subscribe_account(user_id, ...)`` for each accountChanges watcher."""

    def __init__(self, listener: PostgresListener) -> None:
        self.listener = listener
        self.mailboxes: dict[str, set[Mailbox]] = {}  # by project id
        self.accounts: dict[str, set[AccountMailbox]] = {}  # by user id
        self.by_owner: Counter[str] = Counter()
        self._router: asyncio.Task[None] | None = None
        listener.add_reconnect_listener(self._resync_all)

    @property
    def subscriber_count(self) -> int:
        watched = sum(len(boxes) for boxes in self.mailboxes.values())
        return watched + sum(len(boxes) for boxes in self.accounts.values())

    async def connect(self) -> None:
        # A second router would be left running, out of disconnect()'s reach.
        assert self._router is None, "connected already"
        await self.listener.connect()
        self._router = asyncio.create_task(self._route_all(), name="storyline-router")

    async def disconnect(self) -> None:
        router, self._router = self._router, None
        if router is not None:
            router.cancel()
            await asyncio.gather(router, return_exceptions=True)
        await self.listener.disconnect()

    def subscribe(
        self, project_id: str, *, owner: str = "", limit: int | None = None
    ) -> Watch[Mailbox]:
        """Deliveries for one project id, as ``async with``: registered on entry, before
        anything is awaited. Entry raises TooManySubscriptions when ``owner`` already holds
        ``limit`` subscriptions (of either kind)."""
        return Watch(self, self.mailboxes, project_id, owner, limit, Mailbox)

    def subscribe_account(self, user_id: str, *, limit: int | None = None) -> Watch[AccountMailbox]:
        """Deliveries for every project and ledger entry of one account, as ``subscribe``."""
        return Watch(self, self.accounts, user_id, user_id, limit, AccountMailbox)

    def _count(self, owner: str, limit: int | None) -> None:
        if limit is not None and self.by_owner[owner] >= limit:
            raise TooManySubscriptions(limit)
        self.by_owner[owner] += 1

    def _uncount(self, owner: str) -> None:
        self.by_owner[owner] -= 1
        if not self.by_owner[owner]:
            del self.by_owner[owner]

    async def _route_all(self) -> None:
        while True:
            published = await self.listener.next_published()
            try:
                self._route(published.channel, published.message)
            except Exception:
                log.exception("could not route a notification")

    def _route(self, channel: str, payload: str) -> None:
        if channel == LEDGER_CHANNEL:
            if not self.accounts:
                return  # nobody in this process watches an account: nothing to parse for
            balance = BalanceEvent.parse(payload)
            for account in self.accounts.get(balance.user_id, ()):
                account.offer(balance)
            return
        event = ProjectEvent.parse(payload)
        for mailbox in self.mailboxes.get(event.project_id, ()):
            mailbox.offer(event)
        for account in self.accounts.get(event.user_id, ()):
            account.offer(event)

    def _resync_all(self) -> None:
        for registry in (self.mailboxes, self.accounts):
            for boxes in registry.values():
                for box in boxes:
                    box.request_resync()


class Watch(Generic[InboxT]):
    """``async with hub.subscribe(...)``: a class rather than a generator-based context
    manager, to keep each live subscription small."""

    __slots__ = ("_hub", "_inbox", "_key", "_limit", "_make", "_owner", "_registry")

    def __init__(
        self,
        hub: ProjectBroadcast,
        registry: dict[str, set[InboxT]],
        key: str,
        owner: str,
        limit: int | None,
        make: Callable[[], InboxT],
    ) -> None:
        self._hub = hub
        self._registry = registry
        self._key = key
        self._owner = owner
        self._limit = limit
        self._make = make
        self._inbox: InboxT | None = None

    async def __aenter__(self) -> InboxT:
        self._hub._count(self._owner, self._limit)
        inbox = self._inbox = self._make()
        self._registry.setdefault(self._key, set()).add(inbox)
        return inbox

    async def __aexit__(self, *exc: object) -> None:
        inbox, self._inbox = self._inbox, None
        if inbox is None:
            return
        self._hub._uncount(self._owner)
        boxes = self._registry.get(self._key)
        if boxes is not None:
            boxes.discard(inbox)
            if not boxes:
                del self._registry[self._key]
