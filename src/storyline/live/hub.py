"""broadcaster's Broadcast, wrapped for project status.

What the stock class does and this one does not:
- a check-then-await in ``subscribe`` loses one of two concurrent first subscribers:
  here a subscriber is registered synchronously, before anything is awaited;
- an unbounded queue per subscriber that a slow client grows without end: here a
  mailbox of at most ``MAILBOX_LIMIT`` events that collapses to the newest state;
- a listener task that dies silently on the first error: here errors are logged and
  the loop goes on;
- each payload is parsed once per event, not once per subscriber, and routing is a
  dict lookup by project id.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from broadcaster import Broadcast

from storyline.domain.errors import StorylineError
from storyline.live.events import ProjectEvent
from storyline.persistence.listener import RECONNECTED, PostgresListener

log = logging.getLogger(__name__)

MAILBOX_LIMIT = 32


class TooManySubscriptions(StorylineError):
    code = "BAD_USER_INPUT"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"At most {limit} live subscriptions per user; close one first.",
            field="projectId",
            limit=limit,
        )


class Mailbox:
    """What one subscriber has yet to send: pending events in version order, bounded."""

    # Small on purpose: there is one per live subscription. A future is made only while
    # the subscriber waits (an asyncio.Event would carry a deque of its own, always).
    __slots__ = ("_pending", "_waiter", "resync")

    def __init__(self) -> None:
        self._pending: list[ProjectEvent] = []
        self._waiter: asyncio.Future[None] | None = None
        self.resync = False

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def offer(self, event: ProjectEvent) -> None:
        if self._pending and event.version <= self._pending[-1].version:
            return  # a duplicate, or older than what is already waiting
        if len(self._pending) >= MAILBOX_LIMIT:
            # Status is state, not a log: a client this far behind gets the newest state.
            self._pending.clear()
        self._pending.append(event)
        self._wake()

    def request_resync(self) -> None:
        self.resync = True
        self._wake()

    async def take(self) -> tuple[list[ProjectEvent], bool]:
        """Wait for news: the pending events, and whether the row must be re-read."""
        while not self._pending and not self.resync:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        events, self._pending = self._pending, []
        resync, self.resync = self.resync, False
        return events, resync


class ProjectBroadcast(Broadcast):
    def __init__(self, backend: PostgresListener) -> None:
        super().__init__(backend=backend)
        self.listener = backend
        self.mailboxes: dict[str, set[Mailbox]] = {}
        self.by_owner: Counter[str] = Counter()

    @property
    def subscriber_count(self) -> int:
        return sum(len(boxes) for boxes in self.mailboxes.values())

    def subscribe(  # type: ignore[override]
        self, channel: str, *, owner: str = "", limit: int | None = None
    ) -> Subscription:
        """Deliveries for one project id, as ``async with``: registered on entry, before
        anything is awaited. Entry raises TooManySubscriptions when ``owner`` already holds
        ``limit`` of them."""
        return Subscription(self, channel, owner, limit)

    def _register(self, channel: str, owner: str, limit: int | None) -> Mailbox:
        if limit is not None and self.by_owner[owner] >= limit:
            raise TooManySubscriptions(limit)
        mailbox = Mailbox()
        self.mailboxes.setdefault(channel, set()).add(mailbox)
        self.by_owner[owner] += 1
        return mailbox

    def _unregister(self, channel: str, owner: str, mailbox: Mailbox) -> None:
        self.by_owner[owner] -= 1
        if not self.by_owner[owner]:
            del self.by_owner[owner]
        boxes = self.mailboxes.get(channel)
        if boxes is not None:
            boxes.discard(mailbox)
            if not boxes:
                del self.mailboxes[channel]

    async def disconnect(self) -> None:
        """Safe also after a failed connect (the stock method assumes a listener task)."""
        task = getattr(self, "_listener_task", None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._backend.disconnect()

    async def _listener(self) -> None:
        while True:
            event = await self._backend.next_published()
            try:
                self._route(event.channel, event.message)
            except Exception:
                log.exception("could not route a project notification")

    def _route(self, channel: str, message: str) -> None:
        if channel == RECONNECTED:
            for boxes in self.mailboxes.values():
                for mailbox in boxes:
                    mailbox.request_resync()
            return
        event = ProjectEvent.parse(message)
        for mailbox in self.mailboxes.get(event.project_id, ()):
            mailbox.offer(event)


class Subscription:
    """``async with broadcast.subscribe(...)``: a class rather than a generator-based
    context manager, to keep each live subscription small."""

    __slots__ = ("_broadcast", "_channel", "_limit", "_mailbox", "_owner")

    def __init__(
        self, broadcast: ProjectBroadcast, channel: str, owner: str, limit: int | None
    ) -> None:
        self._broadcast = broadcast
        self._channel = channel
        self._owner = owner
        self._limit = limit
        self._mailbox: Mailbox | None = None

    async def __aenter__(self) -> Mailbox:
        self._mailbox = self._broadcast._register(self._channel, self._owner, self._limit)
        return self._mailbox

    async def __aexit__(self, *exc: object) -> None:
        if self._mailbox is not None:
            self._broadcast._unregister(self._channel, self._owner, self._mailbox)
            self._mailbox = None
