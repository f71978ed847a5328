"""The executor strawberry runs each operation with, minus graphql-core's reference cycle.

graphql-core 3.3's executor hands resolvers ``async_helpers``, built from two of its own
bound methods, and keeps it: executor -> helpers -> bound method -> executor. Every
operation's executor, with its context, variables and collected fields (about 40
containers), was therefore freed only by the cycle collector, never by reference counting.
At a few hundred operations a second that garbage is what filled the youngest generation,
and each collection of it stopped the event loop (and every live event behind it) for
milliseconds. Once the operation's result is ready nothing asks for the helpers again, so
the executor drops them, and the whole operation is freed as soon as it is answered.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from graphql import ExecutionResult
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class AcyclicExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def execute_operation(self, serially: bool | None = None) -> Any:
        result = super().execute_operation(serially)
        if self.is_awaitable(result):
            return self._released_after(result)
        self._release(result)
        return result

    async def _released_after(self, pending: Awaitable[Any]) -> Any:
        result = await pending
        self._release(result)
        return result

    def _release(self, result: object) -> None:
        # Incremental delivery (@defer, @stream) keeps executing after the first result.
        if isinstance(result, ExecutionResult):
            del self.async_helpers
