"""What storyline.compat.broadcaster relies on, pinned against the installed broadcaster."""

from __future__ import annotations

import asyncio
import inspect
import json
import tomllib
from importlib.metadata import version
from pathlib import Path

import asyncpg
from broadcaster import Broadcast
from packaging.requirements import Requirement

from storyline.compat.broadcaster import BroadcastBackend, Event
from storyline.persistence.listener import CHANNEL, PostgresListener

INTERFACE = ("connect", "disconnect", "subscribe", "unsubscribe", "publish", "next_published")


def test_the_backend_interface_is_the_one_the_listener_implements() -> None:
    for name in INTERFACE:
        upstream = getattr(BroadcastBackend, name)
        ours = getattr(PostgresListener, name)
        assert inspect.iscoroutinefunction(upstream), name
        assert inspect.iscoroutinefunction(ours), name
        # Broadcast passes the arguments positionally (upstream calls subscribe's "group").
        upstream_arity = len(inspect.signature(upstream).parameters)
        assert len(inspect.signature(ours).parameters) == upstream_arity, name
    event = Event("a channel", "a message")
    assert (event.channel, event.message) == ("a channel", "a message")


async def test_stock_broadcast_drives_the_listener_as_a_custom_backend(database_url: str) -> None:
    """README, "Using custom backends": ``Broadcast(backend=...)`` with our listener hears
    the trigger's channel, so PostgresListener is a broadcaster backend upstream's way."""
    broadcast = Broadcast(backend=PostgresListener(database_url))
    async with broadcast, broadcast.subscribe(CHANNEL) as subscriber:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, '{"a": 1}')
        finally:
            await connection.close()
        heard = await asyncio.wait_for(subscriber.get(), 5)
    assert heard == Event(CHANNEL, '{"a": 1}')
    assert json.loads(heard.message) == {"a": 1}


def test_pyproject_admits_the_installed_broadcaster_and_bounds_it(project_root: Path) -> None:
    declared = tomllib.loads((project_root / "pyproject.toml").read_text())
    [requirement] = [
        Requirement(line)
        for line in declared["project"]["dependencies"]
        if Requirement(line).name == "broadcaster"
    ]
    assert version("broadcaster") in requirement.specifier
    assert any(spec.operator in ("<", "<=", "==", "~=") for spec in requirement.specifier)
