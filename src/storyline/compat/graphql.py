"""graphql-core's executor internals that Storyline builds on.

Checked against graphql-core 3.3.2; tests/compat/test_graphql.py pins each behaviour below.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Sequence
from typing import Any

from graphql import Executor, GraphQLResolveInfoHelpers
from graphql.pyutils import gather_with_cancel


def _gather(values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
    return gather_with_cancel(*values)  # what Executor.gather_async_work does


def weak_async_helpers(executor: Executor[Any]) -> None:
    """Give ``executor``'s resolvers the same ``async_helpers``, reaching it weakly.

    Executor.__init__ builds them from two of its own bound methods and keeps them
    (``async_helpers``), a reference cycle; resolvers' infos read the attribute as they are
    built, so replacing it after __init__ serves every field. ``gather`` is what
    ``gather_async_work`` does (gather_with_cancel); ``track`` calls ``track_async_work``
    while the executor lives. Work still running for the operation holds its executor (the
    frames that complete fields refer to it), so it is there whenever a resolver asks.
    """
    alive = weakref.ref(executor)

    def track(values: Sequence[Any]) -> None:
        executor = alive()
        if executor is not None:
            executor.track_async_work(values)

    executor.async_helpers = GraphQLResolveInfoHelpers(gather=_gather, track=track)


def per_event_executor(executor: Executor[Any], payload: Any) -> Executor[Any]:
    """``executor.build_per_event_executor(payload)``, with a memo of collected subfields of
    its own.

    graphql-core's copy shares ``_relevant_sub_fields`` with ``executor``: a memo keyed by
    the identity of field lists that each execution builds anew, which keeps them alive,
    so every event executed adds an entry for as long as ``executor`` lives. A fan-out
    selection's executor lives as long as anyone watches with that document (schema/
    fanout.py): for a dashboard open all day, memory grew with every event. Within one
    event's execution the memo serves as before.
    """
    per_event = executor.build_per_event_executor(payload)
    per_event._relevant_sub_fields = {}
    return per_event
