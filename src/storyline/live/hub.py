"""Live project events for this process: one broadcaster backend, routed by project id.

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

from storyline.domain.errors import StorylineError
from storyline.live.events import ProjectEvent
from storyline.persistence.listener import PostgresListener

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


class ProjectBroadcast:
    """The process's hub: ``connect``/``disconnect`` around the app's lifetime, and
    ``subscribe(project_id, owner=..., limit=...)`` for each watcher."""

    def __init__(self, listener: PostgresListener) -> None:
        self.listener = listener
        self.mailboxes: dict[str, set[Mailbox]] = {}
        self.by_owner: Counter[str] = Counter()
        self._router: asyncio.Task[None] | None = None
        listener.add_reconnect_listener(self._resync_all)

    @property
    def subscriber_count(self) -> int:
        return sum(len(boxes) for boxes in self.mailboxes.values())

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

    def subscribe(self, project_id: str, *, owner: str = "", limit: int | None = None) -> Watch:
        """Deliveries for one project id, as ``async with``: registered on entry, before
        anything is awaited. Entry raises TooManySubscriptions when ``owner`` already holds
        ``limit`` of them."""
        return Watch(self, project_id, owner, limit)

    def _register(self, project_id: str, owner: str, limit: int | None) -> Mailbox:
        if limit is not None and self.by_owner[owner] >= limit:
            raise TooManySubscriptions(limit)
        mailbox = Mailbox()
        self.mailboxes.setdefault(project_id, set()).add(mailbox)
        self.by_owner[owner] += 1
        return mailbox

    def _unregister(self, project_id: str, owner: str, mailbox: Mailbox) -> None:
        self.by_owner[owner] -= 1
        if not self.by_owner[owner]:
            del self.by_owner[owner]
        boxes = self.mailboxes.get(project_id)
        if boxes is not None:
            boxes.discard(mailbox)
            if not boxes:
                del self.mailboxes[project_id]

    async def _route_all(self) -> None:
        while True:
            published = await self.listener.next_published()
            try:
                self._route(published.message)
            except Exception:
                log.exception("could not route a project notification")

    def _route(self, payload: str) -> None:
        event = ProjectEvent.parse(payload)
        for mailbox in self.mailboxes.get(event.project_id, ()):
            mailbox.offer(event)

    def _resync_all(self) -> None:
        for boxes in self.mailboxes.values():
            for mailbox in boxes:
                mailbox.request_resync()


class Watch:
    """``async with hub.subscribe(...)``: a class rather than a generator-based context
    manager, to keep each live subscription small."""

    __slots__ = ("_hub", "_limit", "_mailbox", "_owner", "_project_id")

    def __init__(
        self, hub: ProjectBroadcast, project_id: str, owner: str, limit: int | None
    ) -> None:
        self._hub = hub
        self._project_id = project_id
        self._owner = owner
        self._limit = limit
        self._mailbox: Mailbox | None = None

    async def __aenter__(self) -> Mailbox:
        self._mailbox = self._hub._register(self._project_id, self._owner, self._limit)
        return self._mailbox

    async def __aexit__(self, *exc: object) -> None:
        if self._mailbox is not None:
            self._hub._unregister(self._project_id, self._owner, self._mailbox)
            self._mailbox = None
