"""An answered operation is freed by reference counting, not left to the cycle collector.

What only the collector can free piles up between its runs, and each run stops the event
loop, so every request and live event behind it waits (the bench's wide scenario showed
these pauses in its p99). graphql-core's executor refers to itself; Storyline's execution
context drops that reference once the result is ready (schema/execution.py).
"""

from __future__ import annotations

import gc
import weakref

import pytest

from storyline.schema.roots import build_schema


class Caller:
    """A context whose lifetime the test can watch."""


@pytest.mark.parametrize(
    "document", ["query Q { __typename }", "mutation M { __typename }", "{ nope }"]
)
async def test_an_answered_operation_is_freed_at_once(document: str) -> None:
    schema = build_schema()
    context = Caller()
    alive = weakref.ref(context)
    gc.collect()
    gc.disable()
    try:
        result = await schema.execute(document, context_value=context)
        assert (result.errors is None) == (document != "{ nope }")
        del result, context
        assert alive() is None, "the operation's context outlived its answer"
    finally:
        gc.enable()
