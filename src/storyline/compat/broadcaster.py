"""broadcaster, as Storyline relies on it: the backend interface its listener implements.

persistence/listener.py's PostgresListener is a broadcaster backend (README, "Using custom
backends": a subclass of ``BroadcastBackend``) that emits broadcaster ``Event``s. Both
names are exported by ``broadcaster`` itself, no private module is reached; they are
fenced here because broadcaster is alpha and asks to be pinned strictly: the interface
(its async methods, ``Event(channel, message)``) is what tests/compat/test_broadcaster.py
pins against the installed version. Storyline does not use broadcaster's ``Broadcast``:
live/hub.py composes the backend itself (design.md, "Live status", says why).
"""

from __future__ import annotations

from broadcaster import BroadcastBackend, Event

__all__ = ["BroadcastBackend", "Event"]
