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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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

    __slots__ = ("_pending", "_wake", "resync")

    def __init__(self) -> None:
        self._pending: list[ProjectEvent] = []
        self._wake = asyncio.Event()
        self.resync = False

    def offer(self, event: ProjectEvent) -> None:
        if self._pending and event.version <= self._pending[-1].version:
            return  # a duplicate, or older than what is already waiting
        if len(self._pending) >= MAILBOX_LIMIT:
            # Status is state, not a log: a client this far behind gets the newest state.
            self._pending.clear()
        self._pending.append(event)
        self._wake.set()

    def request_resync(self) -> None:
        self.resync = True
        self._wake.set()

    async def take(self) -> tuple[list[ProjectEvent], bool]:
        """Wait for news: the pending events, and whether the row must be re-read."""
        await self._wake.wait()
        self._wake.clear()
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

    @asynccontextmanager
    async def subscribe(  # type: ignore[override]
        self, channel: str, *, owner: str = "", limit: int | None = None
    ) -> AsyncIterator[Mailbox]:
        """Deliveries for one project id; registered before the first await.

        Raises TooManySubscriptions when ``owner`` already holds ``limit`` of them.
        """
        if limit is not None and self.by_owner[owner] >= limit:
            raise TooManySubscriptions(limit)
        mailbox = Mailbox()
        self.mailboxes.setdefault(channel, set()).add(mailbox)
        self.by_owner[owner] += 1
        try:
            yield mailbox
        finally:
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
