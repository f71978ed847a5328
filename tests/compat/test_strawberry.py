"""Pins what storyline.compat.strawberry relies on in strawberry-graphql (and cross-web).

A new strawberry release is admitted (pyproject.toml's bound) once these pass against it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from inspect import isawaitable
from typing import Any

import graphql
import pytest
import strawberry
from graphql import (
    Executor,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    parse,
    specified_rules,
    validate,
)
from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import ExecutingContextManager
from strawberry.permission import BasePermission
from strawberry.schema import schema as strawberry_schema
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from storyline.compat.graphql import weak_async_helpers
from storyline.compat.strawberry import (
    VALIDATION_RULES,
    StrawberryExecutionContext,
    build_executor,
    graphql_schema,
    operation_types_allowed,
    provided_operation_name,
    reads_an_attribute,
    run_execute_hooks,
    yields_the_event,
)
from tests.compat.samples import SCHEMA, Query, Subscription

TWO = "query A { hello } query B { hello }"


def test_the_graphql_core_schema_is_the_one_strawberry_built() -> None:
    built = graphql_schema(SCHEMA)
    assert isinstance(built, GraphQLSchema)
    assert built.query_type is not None
    assert set(built.query_type.fields) == {"hello"}
    assert built.mutation_type is not None
    assert built.subscription_type is not None
    # strawberry's resolvers are this schema's: graphql-core alone executes with them.
    assert graphql.graphql_sync(built, "{ hello }").data == {"hello": "world"}


def test_the_provided_operation_name_is_kept_apart_from_the_fallback() -> None:
    def context(name: str | None) -> ExecutionContext:
        return ExecutionContext(
            query=TWO,
            schema=SCHEMA,
            allowed_operations=(),
            provided_operation_name=name,
            graphql_document=parse(TWO),
        )

    assert provided_operation_name(context(None)) is None
    assert context(None).operation_name == "A"  # the fallback OperationChoice must not see
    assert provided_operation_name(context("B")) == "B"


async def test_extensions_see_the_request_s_operation_name_and_the_schema_executing() -> None:
    seen: list[tuple[str | None, object]] = []

    class Recording(SchemaExtension):
        def on_validate(self) -> Iterator[None]:
            seen.append(
                (provided_operation_name(self.execution_context), self.execution_context.schema)
            )
            yield

    class Subclass(strawberry.Schema):
        pass

    schema = Subclass(query=Query, extensions=[Recording])
    await schema.execute("{ hello }")
    await schema.execute("query Q { hello }", operation_name="Q")
    assert seen == [(None, schema), ("Q", schema)]  # documents.py reads the guard off it


def test_execute_allows_every_operation_type_when_given_none() -> None:
    assert operation_types_allowed(None) == set(OperationType)
    assert operation_types_allowed([OperationType.QUERY]) == {OperationType.QUERY}


async def test_strawberry_validates_with_graphql_core_s_rules_and_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    used: list[tuple[type[graphql.ASTValidationRule], ...]] = []

    def recording(schema: GraphQLSchema, document: Any, rules: Any) -> list[GraphQLError]:
        used.append(tuple(rules))
        return validate(schema, document, rules)

    monkeypatch.setattr(strawberry_schema, "validate", recording)
    await SCHEMA.execute("{ hello }")
    assert used == [(*specified_rules, *VALIDATION_RULES)]


async def test_an_extension_s_document_and_errors_replace_parsing_and_validation() -> None:
    """What GuardedDocuments does: strawberry neither parses nor validates again."""

    class Guarded(SchemaExtension):
        def on_parse(self) -> Iterator[None]:
            self.execution_context.graphql_document = parse("{ hello nope }")
            yield

        def on_validate(self) -> Iterator[None]:
            self.execution_context.pre_execution_errors = []
            yield

    result = await strawberry.Schema(query=Query, extensions=[Guarded]).execute("not GraphQL")
    assert result.errors is None
    assert result.data == {"hello": "world"}  # the unknown field was never validated


def test_the_default_executor_is_strawberry_s_and_reads_the_helpers_per_field() -> None:
    assert strawberry.Schema(query=Query).execution_context_class is StrawberryExecutionContext
    helpers: list[object] = []

    class Replaced(StrawberryExecutionContext):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            weak_async_helpers(self)
            helpers.append(self.async_helpers)

    @strawberry.type
    class Asking:
        @strawberry.field
        def helpers(self, info: strawberry.Info[None, None]) -> bool:
            return info._raw_info.async_helpers is helpers[0]

    schema = strawberry.Schema(query=Asking, execution_context_class=Replaced)
    assert schema.execute_sync("{ helpers }").data == {"helpers": True}


async def test_an_executor_is_built_of_the_schema_s_class_without_a_context() -> None:
    document = parse("subscription S($upto: Int!) { count(upto: $upto) }")
    built = build_executor(SCHEMA, document, 7, {"upto": 3}, "S")
    assert isinstance(built, SCHEMA.execution_context_class)
    assert isinstance(built, Executor)
    assert built.context_value is None
    # strawberry's subscription field resolves each event to the event itself.
    result = graphql.execute_subscription_event(built)
    if isawaitable(result):
        result = await result
    assert result == graphql.ExecutionResult({"count": 7})
    refused = build_executor(SCHEMA, document, None, {"upto": "x"}, "S")
    assert isinstance(refused, list)
    assert all(isinstance(error, GraphQLError) for error in refused)


def test_the_execute_hooks_run_once_with_strawberry_s_execution_context() -> None:
    seen: list[tuple[str | None, str | None, object, object]] = []

    class Recording(SchemaExtension):
        def on_execute(self) -> Iterator[None]:
            context = self.execution_context
            seen.append((context.operation_name, context.query, context.context, context.variables))
            yield

    schema = strawberry.Schema(query=Query, subscription=Subscription, extensions=[Recording])
    query = "subscription S { count(upto: 1) }"
    run_execute_hooks(
        schema,
        query=query,
        document=parse(query),
        context="ctx",
        variables={"v": 1},
        operation_name="S",
        allowed=(OperationType.SUBSCRIPTION,),
    )
    assert seen == [("S", query, "ctx", {"v": 1})]


def test_the_execute_hooks_run_in_the_runner_s_order_and_hookless_extensions_are_passed_over() -> (
    None
):
    events: list[str] = []

    def hooked(name: str) -> type[SchemaExtension]:
        class Hooked(SchemaExtension):
            def on_execute(self) -> Iterator[None]:
                events.append(f"{name} in")
                yield
                events.append(f"{name} out")

        return Hooked

    class Quiet(SchemaExtension):  # other hooks only
        def on_operation(self) -> Iterator[None]:
            events.append("operation")
            yield

    extensions = [hooked("first"), Quiet, hooked("second")]
    schema = strawberry.Schema(query=Query, subscription=Subscription, extensions=extensions)
    query = "subscription S { count(upto: 1) }"
    run_execute_hooks(
        schema,
        query=query,
        document=parse(query),
        context=None,
        variables=None,
        operation_name="S",
        allowed=(OperationType.SUBSCRIPTION,),
    )
    assert events == ["first in", "second in", "second out", "first out"]
    # What lets run_execute_hooks leave such extensions out: strawberry's runner has no
    # hook for them either.
    assert ExecutingContextManager([Quiet()]).hooks == []


class Nobody(BasePermission):
    message = "nobody"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return False


@strawberry.type
class Plain:
    name: str
    guarded: str = strawberry.field(default="x", permission_classes=[Nobody])

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()


@strawberry.type
class PlainQuery:
    plain: Plain


@strawberry.type
class PlainSubscription:
    @strawberry.subscription
    async def plains(self) -> AsyncGenerator[Plain, None]:
        yield Plain(name="a")


def test_a_field_without_a_resolver_is_read_off_its_source_whatever_info_it_is_given() -> None:
    schema = graphql_schema(strawberry.Schema(query=PlainQuery, subscription=PlainSubscription))
    plain = schema.get_type("Plain")
    assert isinstance(plain, GraphQLObjectType)
    assert reads_an_attribute(plain.fields["name"])
    resolve = plain.fields["name"].resolve
    assert resolve is not None
    assert resolve(Plain(name="Ada"), None) == "Ada"
    assert not reads_an_attribute(plain.fields["shout"])  # a resolver of its own
    assert not reads_an_attribute(plain.fields["guarded"])  # a permission to ask first


def test_a_subscription_field_resolves_each_event_to_itself() -> None:
    schema = graphql_schema(strawberry.Schema(query=PlainQuery, subscription=PlainSubscription))
    assert schema.subscription_type is not None
    assert schema.query_type is not None
    field = schema.subscription_type.fields["plains"]
    assert yields_the_event(field)
    event = Plain(name="b")
    assert field.resolve is not None
    assert field.resolve(event, None) is event
    assert not yields_the_event(schema.query_type.fields["plain"])
