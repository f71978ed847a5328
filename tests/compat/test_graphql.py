"""Pins what storyline.compat.graphql (and schema/fanout.py) rely on in graphql-core's executor.

A new graphql-core release is admitted (pyproject.toml's bound) once these pass against it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from graphql import (
    ExecutionResult,
    Executor,
    FieldNode,
    GraphQLObjectType,
    GraphQLResolveInfo,
    OperationDefinitionNode,
    build_schema,
    execute_subscription_event,
    get_argument_values,
    get_variable_values,
    parse,
)
from graphql.pyutils import gather_with_cancel

from storyline.compat.graphql import (
    fields_below,
    first_node,
    per_event_executor,
    root_fields,
    weak_async_helpers,
)
from storyline.schema.execution import AcyclicExecutionContext

SCHEMA = build_schema(
    """
    type Query { seen: Boolean }
    type Subscription { greeting(name: String!): String }
    """
)


def executor(document: str = "{ seen }", root: object = None) -> Executor[Any]:
    built = Executor.build(SCHEMA, parse(document), root)
    assert isinstance(built, Executor)
    return built


def test_an_executor_s_helpers_are_its_own_bound_methods() -> None:
    """The reference cycle weak_async_helpers breaks."""
    built = executor()
    gather, track = built.async_helpers.gather, built.async_helpers.track
    assert getattr(gather, "__self__", None) is built
    assert getattr(gather, "__func__", None) is Executor.gather_async_work
    assert getattr(track, "__self__", None) is built
    assert getattr(track, "__func__", None) is Executor.track_async_work


@pytest.mark.usefixtures("no_collector")
def test_with_weak_helpers_an_executor_is_freed_by_reference_counting() -> None:
    built = executor()
    weak_async_helpers(built)
    alive = weakref.ref(built)
    del built
    assert alive() is None


async def test_resolvers_get_the_helpers_the_executor_holds_when_they_run() -> None:
    given: list[object] = []

    def seen(info: GraphQLResolveInfo[Any]) -> bool:  # a root value's callable: (info)
        given.append(info.async_helpers)
        return True

    built = executor(root={"seen": seen})
    weak_async_helpers(built)
    assert built.execute_operation() == ExecutionResult({"seen": True})
    assert given == [built.async_helpers]


Gather = Callable[[list[Awaitable[Any]]], Awaitable[list[Any]]]


@pytest.mark.parametrize(
    "gather",
    [
        lambda values: executor().gather_async_work(values),
        lambda values: gather_with_cancel(*values),
    ],
    ids=["gather_async_work", "gather_with_cancel"],
)
async def test_gathering_async_work_cancels_the_rest_when_one_fails(gather: Gather) -> None:
    """gather_async_work does what gather_with_cancel does, which weak_async_helpers uses."""

    async def value(number: int) -> int:
        await asyncio.sleep(0)
        return number

    assert await gather([value(1), value(2)]) == [1, 2]
    cancelled: list[bool] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def failing() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await gather([slow(), failing()])
    assert cancelled == [True]


async def test_tracked_work_is_settled_in_the_background() -> None:
    done = asyncio.Event()

    async def work() -> None:
        done.set()

    executor().track_async_work([work(), 1])
    await asyncio.wait_for(done.wait(), 1)


def test_one_executor_renders_an_event_and_reads_the_root_field_s_arguments() -> None:
    """What schema/fanout.py does with graphql-core's executor for each selection."""
    document = parse("subscription G($name: String!) { greeting(name: $name) }")
    built = Executor.build(SCHEMA, document, {"greeting": "hi"}, None, {"name": "Ada"}, "G")
    assert isinstance(built, Executor)
    assert execute_subscription_event(built) == ExecutionResult({"greeting": "hi"})
    subscription = SCHEMA.subscription_type
    assert subscription is not None
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    root = operation.selection_set.selections[0]
    assert isinstance(root, FieldNode)
    field = subscription.fields["greeting"]
    assert get_argument_values(field, root, built.variable_values) == {"name": "Ada"}
    refused = Executor.build(SCHEMA, document, None, None, {}, "G")
    assert isinstance(refused, list)


NESTED = build_schema(
    """
    type Query { seen: Boolean }
    type Event { status: String, entry: Entry }
    type Entry { id: ID }
    type Subscription { changed: Event }
    """
)
EVENT_DOCUMENT = "subscription { changed { status entry { id } } }"


def rendered_events(
    per_event: Callable[[Executor[Any], Any], Executor[Any]], kind: type[Executor[Any]] = Executor
) -> int:
    """How many memo entries the shared executor holds after rendering ten events."""
    shared = kind.build(NESTED, parse(EVENT_DOCUMENT))
    assert isinstance(shared, Executor)
    for n in range(10):
        event = {"changed": {"status": f"S{n}", "entry": {"id": str(n)}}}
        result = execute_subscription_event(per_event(shared, event))
        assert isinstance(result, ExecutionResult)
        assert result.data == event
    return len(shared._relevant_sub_fields)


def test_per_event_executors_share_the_collect_subfields_memo() -> None:
    # Why per_event_executor exists: graphql-core's copy shares the memo, and each event's
    # execution adds to it, so the executor the copies come from grows with every event.
    def plain(executor: Executor[Any], payload: Any) -> Executor[Any]:
        return executor.build_per_event_executor(payload)

    assert rendered_events(plain) >= 10


def test_a_per_event_executor_leaves_the_shared_memo_as_it_was() -> None:
    assert rendered_events(per_event_executor) == 0


def test_strawberrys_path_gives_each_event_a_memo_of_its_own() -> None:
    def built_in(executor: Executor[Any], payload: Any) -> Executor[Any]:
        return executor.build_per_event_executor(payload)

    assert rendered_events(built_in, AcyclicExecutionContext) == 0


POINTS = build_schema(
    """
    type Query { seen: Boolean }
    type Point { x: Int, y: Int, next: Point }
    type Subscription { moved: Point }
    """
)


def nested_executor(document: str, variables: dict[str, Any] | None = None) -> Executor[Any]:
    built = Executor.build(POINTS, parse(document), None, None, variables)
    assert isinstance(built, Executor)
    return built


def test_fields_are_collected_by_response_name_as_the_executor_decides_them() -> None:
    built = nested_executor(
        "subscription($far: Boolean!) { at: moved { x ...F y @skip(if: true) "
        "next @include(if: $far) { y } } } fragment F on Point { x again: x }",
        {"far": True},
    )
    assert POINTS.subscription_type is not None
    root = root_fields(built, POINTS.subscription_type)
    assert root is not None
    assert list(root) == ["at"]
    assert first_node(root["at"]).name.value == "moved"
    point = POINTS.get_type("Point")
    assert isinstance(point, GraphQLObjectType)
    below = fields_below(built, point, root["at"])
    assert below is not None
    assert list(below) == ["x", "again", "next"]
    assert len(below["x"]) == 2  # the field and the fragment's, one group
    assert [first_node(group).name.value for group in below.values()] == ["x", "x", "next"]


def test_deferred_fields_are_not_collected_as_plain_ones() -> None:
    schema = build_schema(
        """
        directive @defer(label: String, if: Boolean! = true) on FRAGMENT_SPREAD | INLINE_FRAGMENT
        type Query { seen: Boolean }
        type Point { x: Int }
        type Subscription { moved: Point }
        """
    )
    built = Executor.build(schema, parse("subscription { moved { ... @defer { x } } }"))
    assert isinstance(built, Executor)
    assert schema.subscription_type is not None
    root = root_fields(built, schema.subscription_type)
    assert root is not None
    point = schema.get_type("Point")
    assert isinstance(point, GraphQLObjectType)
    assert fields_below(built, point, root["moved"]) is None


@pytest.mark.parametrize(
    "variables",
    [{"name": "Ada"}, {"name": 7}, {}, {"name": None}, {"name": "Ada", "extra": 1}],
)
def test_variables_coerce_as_building_an_executor_coerces_them(variables: dict[str, Any]) -> None:
    """schema/fanout.py coerces a known selection's variables without building an executor:
    the same values, and a refusal exactly where the build refuses."""
    document = parse("subscription G($name: String!) { greeting(name: $name) }")
    built = Executor.build(SCHEMA, document, None, None, variables, "G")
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    coerced = get_variable_values(SCHEMA, operation.variable_definitions or (), variables)
    assert isinstance(coerced, list) == isinstance(built, list)
    if not isinstance(built, list):
        assert not isinstance(coerced, list)
        assert coerced.coerced == built.variable_values.coerced
