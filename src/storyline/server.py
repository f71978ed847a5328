"""How uvicorn serves Storyline: the options of ``storyline serve`` (and of the tests' servers),
and an HTTP/1.1 protocol that bounds what one request may hold.

uvicorn's HTTP protocols put no limit on a request's head (httptools buffers any amount of
headers) and no limit on the time a client takes to send a request: its keep-alive timeout
only runs between requests, and every byte received cancels it. A client sending its
headers or body slowly, or a chunked body that never ends, holds a connection and its
buffers for as long as it likes. Here a request's head is refused past ``MAX_HEAD_BYTES``
(431), and a request not received in full within ``request_timeout`` seconds of its first
byte (or of the connection, for a connection that sends nothing) is answered 408 and
closed. Only receiving is timed: once a request is in, answering it takes what it takes.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from storyline.config import Settings
from storyline.websocket import websocket_options

MAX_HEAD_BYTES = 64 * 1024


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The options of ``uvicorn.run`` or ``uvicorn.Config`` that serve these settings."""
    return {
        # A partial of a module-level class: worker processes receive it pickled.
        "http": functools.partial(BoundedRequests, request_timeout=settings.request_timeout),
        **websocket_options(settings),
    }


class BoundedRequests(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a limit on a request's head and a deadline for
    receiving the whole request."""

    def __init__(self, *args: Any, request_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout
        # When the request being received began (None: none is). One timer per connection
        # checks it, re-armed for what is left, rather than a timer per request.
        self.receiving_since: float | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.reading_head = True
        self.head_bytes = 0  # received since the current head began, as the parser got them
        self.head_too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._receiving()  # a connection that never sends a request is timed as well

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.reading_head:
            self.head_bytes += len(data)
            # A pipelined request is timed once the one before it is answered.
            if self.receiving_since is None and (
                self.cycle is None or self.cycle.response_complete
            ):
                self._receiving()
        super().data_received(data)
        # A head still incomplete after this chunk: refused here, before it grows further
        # (a complete one was measured exactly when it ended).
        if self.head_too_large or (self.reading_head and self.head_bytes > MAX_HEAD_BYTES):
            self._refuse(431, f"The request's headers are larger than {MAX_HEAD_BYTES} bytes.")

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > MAX_HEAD_BYTES:
            self.head_too_large = True  # answered once the parser returns
            return
        self.reading_head = False
        self.head_bytes = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.head_too_large:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.head_too_large:
            return
        self.receiving_since = None
        self.reading_head = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Part of the next request came while this one was being answered: its time runs now.
        if self.reading_head and self.head_bytes and not self.transport.is_closing():
            self._receiving()

    def handle_websocket_upgrade(self) -> None:
        if self.head_too_large:
            return
        self.receiving_since = None  # a WebSocket has its own keep-alive
        self._stop_deadline()
        super().handle_websocket_upgrade()

    def _receiving(self) -> None:
        self.receiving_since = self.loop.time()
        if self.deadline is None:
            self.deadline = self.loop.call_later(self.request_timeout, self._check_deadline)

    def _check_deadline(self) -> None:
        self.deadline = None
        if self.receiving_since is None:
            return  # re-armed when the next request begins
        left = self.receiving_since + self.request_timeout - self.loop.time()
        if left > 0:
            self.deadline = self.loop.call_later(left, self._check_deadline)
        else:
            self._refuse(408, f"The request was not received within {self.request_timeout:g} s.")

    def _stop_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` (unless a response is already being sent) and close."""
        self._stop_deadline()
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started or self.cycle.response_complete:
            body = json.dumps(
                {"errors": [{"message": message, "extensions": {"code": "BAD_USER_INPUT"}}]}
            ).encode()
            reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
            self.transport.write(
                b"HTTP/1.1 %d %s\r\n" % (status, reason)
                + b"content-type: application/json\r\n"
                + b"content-length: %d\r\n" % len(body)
                + b"connection: close\r\n\r\n"
                + body
            )
        self.transport.close()
