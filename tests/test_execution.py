"""An answered operation is freed by reference counting, not left to the cycle collector.

What only the collector can free piles up between its runs, and each run stops the event
loop, so every request and live event behind it waits (the bench's wide scenario showed
these pauses in its p99). graphql-core's executor refers to itself through the helpers it
gives resolvers; Storyline's execution context gives them a weak reference instead
(schema/execution.py), without changing what they do. (An operation whose resolver raised
is still left to the collector: a traceback refers to its frames, and they to it.)
"""

from __future__ import annotations

import asyncio
import weakref

import pytest
import strawberry

from storyline.schema.execution import AcyclicExecutionContext
from storyline.schema.roots import build_schema


class Caller:
    """A context whose lifetime the test can watch."""

    def __init__(self) -> None:
        self.ran: list[str] = []


@strawberry.type
class Child:
    @strawberry.field
    async def name(self, info: strawberry.Info[Caller, None]) -> str:
        info.context.ran.append("name")
        return "child"


@strawberry.type
class Wrapper:
    @strawberry.field
    async def slow(self) -> Child:
        await asyncio.sleep(0.01)
        return Child()

    @strawberry.field
    def boom(self) -> int:
        raise ValueError("boom")


@strawberry.type
class Query:
    @strawberry.field
    async def later(self) -> int:
        await asyncio.sleep(0)
        return 1

    @strawberry.field
    def wrapper(self) -> Wrapper | None:
        return Wrapper()


TEST_SCHEMA = strawberry.Schema(query=Query, execution_context_class=AcyclicExecutionContext)


@pytest.mark.usefixtures("no_collector")
@pytest.mark.parametrize(
    ("schema", "document"),
    [
        (build_schema(), "query Q { __typename }"),
        (build_schema(), "mutation M { __typename }"),
        (TEST_SCHEMA, "{ later }"),  # a resolver that awaits: the path real operations take
    ],
)
async def test_an_answered_operation_is_freed_at_once(
    schema: strawberry.Schema, document: str
) -> None:
    context = Caller()
    alive = weakref.ref(context)
    result = await schema.execute(document, context_value=context)
    assert result.data is not None
    del result, context
    assert alive() is None, "the operation's context outlived its answer"


async def test_work_settled_after_the_answer_still_runs() -> None:
    """A field that fails at once nulls its parent while a sibling still runs: graphql-core
    answers without waiting and settles the sibling in the background, whose resolvers
    still ask the executor for what they need."""
    context = Caller()
    result = await TEST_SCHEMA.execute("{ wrapper { slow { name } boom } }", context_value=context)
    assert result.data == {"wrapper": None}
    del result
    for _ in range(100):
        if context.ran:
            break
        await asyncio.sleep(0.01)
    assert context.ran == ["name"], "the sibling's fields resolved in the background"
