"""uvicorn's protocol internals that Storyline builds on.

Checked against uvicorn 0.54.0 (with httptools 0.9.0 and websockets 16.1);
tests/compat/test_uvicorn.py pins each behaviour below.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from storyline.graphql_http import refusal


class KeepalivePings(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol (``ws="websockets-sansio"``), with the delay
    of the first keep-alive ping chosen by ``first_ping_delay``.

    Relies on (uvicorn 0.54.0): ``start_keepalive()`` called once the handshake is sent,
    when ``ping_interval`` is the server's ``ws_ping_interval``; the next ping due in
    ``ping_timer``, a timer calling ``send_keepalive_ping``, which sends it and schedules
    the one after at the interval (or the pong's deadline); ``stop_keepalive()`` cancelling
    ``ping_timer`` when the connection ends.
    """

    def first_ping_delay(self, interval: float) -> float:
        """Seconds from the handshake to the first ping; uvicorn's own: the interval."""
        return interval

    def start_keepalive(self) -> None:
        interval = self.ping_interval
        if interval is not None and interval > 0:
            delay = self.first_ping_delay(interval)
            self.ping_timer = self.loop.call_later(delay, self.send_keepalive_ping)


class BoundedRequests(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a limit on a request's head (``max_head_bytes``)
    and a deadline for receiving the whole request (``request_timeout`` seconds); what it
    is for is in storyline.server.

    Relies on (uvicorn 0.54.0, httptools 0.9.0): the parser's callbacks, called on the
    protocol while ``data_received`` feeds it (``on_headers_complete`` with ``url`` and
    ``headers`` complete, then ``on_body``, ``on_message_complete``); ``cycle``, the
    request being answered (None before the first), with ``response_started`` and
    ``response_complete``; ``on_response_complete`` when a response has been sent;
    ``handle_websocket_upgrade`` when a request upgrades; ``loop`` and ``transport``.
    """

    def __init__(
        self, *args: Any, request_timeout: float, max_head_bytes: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout
        self.max_head_bytes = max_head_bytes
        # When the request being received began (None: none is). One timer per connection
        # checks it, re-armed for what is left, rather than a timer per request.
        self.receiving_since: float | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.reading_head = True
        self.head_bytes = 0  # received since the current head began, as the parser got them
        self.head_too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.receiving()  # a connection that never sends a request is timed as well

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.reading_head:
            self.head_bytes += len(data)
            # A pipelined request is timed once the one before it is answered.
            if self.receiving_since is None and (
                self.cycle is None or self.cycle.response_complete
            ):
                self.receiving()
        super().data_received(data)
        # A head still incomplete after this chunk: refused here, before it grows further
        # (a complete one was measured exactly when it ended).
        if self.head_too_large or (self.reading_head and self.head_bytes > self.max_head_bytes):
            limit = self.max_head_bytes
            self.refuse(431, f"The request's headers are larger than {limit} bytes.")

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_head_bytes:
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
            self.receiving()

    def handle_websocket_upgrade(self) -> None:
        if self.head_too_large:
            return
        self.receiving_since = None  # a WebSocket has its own keep-alive
        self.stop_deadline()
        super().handle_websocket_upgrade()

    def receiving(self) -> None:
        self.receiving_since = self.loop.time()
        if self.deadline is None:
            self.deadline = self.loop.call_later(self.request_timeout, self.check_deadline)

    def check_deadline(self) -> None:
        self.deadline = None
        if self.receiving_since is None:
            return  # re-armed when the next request begins
        left = self.receiving_since + self.request_timeout - self.loop.time()
        if left > 0:
            self.deadline = self.loop.call_later(left, self.check_deadline)
        else:
            self.refuse(408, f"The request was not received within {self.request_timeout:g} s.")

    def stop_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def refuse(self, status: int, message: str) -> None:
        """Answer ``status`` (unless a response is already being sent) and close."""
        self.stop_deadline()
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started or self.cycle.response_complete:
            body = refusal(message)
            reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
            self.transport.write(
                b"HTTP/1.1 %d %s\r\n" % (status, reason)
                + b"content-type: application/json\r\n"
                + b"content-length: %d\r\n" % len(body)
                + b"connection: close\r\n\r\n"
                + body
            )
        self.transport.close()
