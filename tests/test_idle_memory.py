"""What an idle subscription keeps, on which the bench's memory targets rest (memory per
idle subscription against a bare WebSocket, docs/benchmarks.md): its socket's task and its
operation's (and graphql-ws's keep-alive), no task waiting for a connection_init that came,
and no token once the caller is known."""

from __future__ import annotations

import asyncio
import gc
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import websockets

from storyline.schema.context import Context
from tests.support import Api, new_user, token
from tests.support.tasks import started_since
from tests.support.waiting import settled
from tests.support.watch import (
    LEGACY_WS,
    TRANSPORT_WS,
    connected,
    next_change,
    next_event,
    start,
    start_account,
)

WATCHERS = 20


def _server_tasks() -> set[asyncio.Task[object]]:
    """The tasks of this loop but the test's clients' (websockets' own client keeps one
    per connection; the server's sockets are uvicorn's)."""
    client = str(Path(websockets.__file__).parent / "asyncio")
    return {task for task in asyncio.all_tasks() if not _code_file(task).startswith(client)}


def _code_file(task: asyncio.Task[object]) -> str:
    code = getattr(task.get_coro(), "cr_code", None)
    return "" if code is None else str(code.co_filename)


def _finished_tasks() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, asyncio.Task) and o.done())


def _websocket_contexts() -> list[Context]:
    return [o for o in gc.get_objects() if isinstance(o, Context) and o.websocket]


@pytest.mark.parametrize(
    ("protocol", "tasks_each"),
    # The socket's task (uvicorn's) and the operation's; graphql-ws adds its keep-alive.
    [(TRANSPORT_WS, 2), (LEGACY_WS, 3)],
)
@pytest.mark.parametrize("field", ["projectStatus", "accountChanges"])
async def test_an_idle_watcher_keeps_two_tasks_and_no_token(
    api: Api, protocol: str, tasks_each: int, field: str
) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    before = await settled(_server_tasks)
    finished = _finished_tasks()
    async with AsyncExitStack() as stack:
        for _ in range(WATCHERS):
            ws = await stack.enter_async_context(connected(api.url, token(user), protocol))
            if field == "projectStatus":
                await start(ws, project["id"])
                assert (await next_event(ws, within=10))["status"] == "PROCESSING"
            else:
                await start_account(ws)
                await next_change(ws, within=10)  # the balance, then the project
                await next_change(ws, within=10)
        # The tasks started since, of kinds the idle instance did not run (an earlier
        # test's may end meanwhile; the instance's own waits start anew now and then).
        started = await settled(lambda: started_since(before) & _server_tasks())
        assert len(started) == tasks_each * WATCHERS
        # Nor a finished one kept (strawberry keeps the init wait's, cancelled, with its
        # exception and frame, as long as the socket lives).
        assert _finished_tasks() - finished < WATCHERS / 2
        contexts = _websocket_contexts()
        assert len(contexts) >= WATCHERS
        assert all(context.connection_params is None for context in contexts)
