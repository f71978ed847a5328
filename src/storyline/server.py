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

import functools
from typing import Any

from storyline.compat.uvicorn import BoundedRequests
from storyline.config import Settings
from storyline.websocket import websocket_options

MAX_HEAD_BYTES = 64 * 1024


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The options of ``uvicorn.run`` or ``uvicorn.Config`` that serve these settings."""
    return {
        # A partial of a module-level class: worker processes receive it pickled.
        "http": functools.partial(
            BoundedRequests,
            request_timeout=settings.request_timeout,
            max_head_bytes=MAX_HEAD_BYTES,
        ),
        **websocket_options(settings),
    }
