"""The executor strawberry runs each operation with, minus graphql-core's reference cycle
and the memo its subscriptions' events grow.

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

from typing import Any

from graphql import Executor

from storyline.compat.graphql import own_memo, weak_async_helpers
from storyline.compat.strawberry import StrawberryExecutionContext


class AcyclicExecutionContext(StrawberryExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        weak_async_helpers(self)

    def build_per_event_executor(self, payload: Any) -> Executor[Any]:
        # Each event of a subscription on strawberry's path (the legacy subprotocol, say)
        # would otherwise add to this executor's memo for as long as the subscription lives.
        return own_memo(super().build_per_event_executor(payload))
