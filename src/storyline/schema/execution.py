"""The executor strawberry runs each operation with, minus graphql-core's reference cycle.

graphql-core 3.3's executor hands resolvers ``async_helpers``, built from two of its own
bound methods, and keeps it: executor -> helpers -> bound method -> executor. Every
operation's executor, with its context, variables and collected fields (about 40
containers), was therefore freed only by the cycle collector, never by reference counting.
At a few hundred operations a second that garbage is what filled the youngest generation,
and each collection of it stopped the event loop (and every live event behind it) for
milliseconds. Here the helpers reach their executor through a weak reference: the same
helpers for resolvers, and the whole operation is freed as soon as nothing runs for it.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Sequence
from typing import Any

from graphql import GraphQLResolveInfoHelpers
from graphql.pyutils import gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


def _gather(values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
    return gather_with_cancel(*values)  # what Executor.gather_async_work does


class AcyclicExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        executor = weakref.ref(self)

        def track(values: Sequence[Any]) -> None:
            # Work still running for the operation holds its executor (the frames that
            # complete fields refer to it), so it is there whenever a resolver asks.
            alive = executor()
            if alive is not None:
                alive.track_async_work(values)

        self.async_helpers = GraphQLResolveInfoHelpers(gather=_gather, track=track)
