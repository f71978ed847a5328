"""How the server speaks WebSocket: uvicorn's options, and keep-alive pings spread in time.

uvicorn pings every WebSocket ``ws_ping_interval`` seconds after it opened, so connections
opened together (a deploy, a network blip: every editor reconnects at once) are pinged
together, at the same phase, for as long as they live. With thousands of watchers that is
a burst of pings and pongs that holds the event loop for hundreds of milliseconds, and
every live event due meanwhile waits. Each connection's first ping here comes at a random
moment between half and the whole interval; the ones after follow at the interval, so the
spread lasts.
"""

from __future__ import annotations

import random
from typing import Any

from storyline.compat.uvicorn import KeepalivePings
from storyline.config import Settings


class SpreadKeepalive(KeepalivePings):
    """uvicorn's default WebSocket protocol (``websockets``, sans-I/O), first ping jittered."""

    def first_ping_delay(self, interval: float) -> float:
        return random.uniform(0.5, 1.0) * interval


def websocket_options(settings: Settings) -> dict[str, Any]:
    """The WebSocket options of ``uvicorn.run`` or ``uvicorn.Config`` for these settings
    (storyline.server.uvicorn_options adds the HTTP ones)."""
    return {
        "ws": f"{__name__}:{SpreadKeepalive.__name__}",  # by name: worker processes import it
        # Events are a few hundred bytes; each compressed connection holds tens of KB.
        "ws_per_message_deflate": False,
        "ws_max_size": settings.max_body_bytes,  # a message is held to the body limit
        "ws_ping_interval": settings.ws_ping_interval or None,
        "ws_ping_timeout": settings.ws_ping_timeout,
    }
