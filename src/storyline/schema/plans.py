"""A live event's payload built without graphql-core's executor, where that gives the same text.

graphql-core executes an event field by field, about 10 µs each here; a projectStatus
event is nine fields. The fan-out renders each event once per selection, but a watcher's
first event is its own project's state, so a reconnect storm renders one event per
watcher and spends more on execution than on anything else it does for a subscription.

A ``Plan`` is a selection's fields collected once, by graphql-core's own collect_fields with
the selection's variables (fragments, aliases, @include and @skip decided as the executor
decides them), each then read by the field's own resolver and serialized by its own type,
as the executor does. It covers what live events are: objects whose fields are leaves or
such objects, each read by strawberry's default resolver. Anything else (a union, a list,
a field with arguments or a resolver of its own, a type with is_type_of) gets no plan, and
a value the executor would turn into an error (a null in a non-null field, a value its
type cannot serialize) gets no payload: graphql-core renders those.
tests/test_plans.py holds both equal over generated documents and events.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    Executor,
    GraphQLError,
    GraphQLField,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    Undefined,
)
from graphql.pyutils import is_awaitable

from storyline.compat.graphql import FieldGroup, fields_below, first_node, root_fields
from storyline.compat.strawberry import reads_an_attribute, yields_the_event

Complete = Callable[[Any], Any]  # a field's source -> its value in the payload


class Unplanned(Exception):
    """A value the executor would not complete to a value: it reports an error instead."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How one selection's payload is built from the value its root field's resolver gets."""

    key: str  # the root field's response name
    complete: Complete

    def payload(self, root_value: object) -> str | None:
        """The payload's JSON text, as fanout.payload encodes the executor's result; None
        when the executor would answer errors."""
        try:
            data = {self.key: self.complete(root_value)}
        except Exception:
            return None
        return json.dumps({"data": data}, separators=(",", ":"))


def plan(executor: Executor[Any]) -> Plan | None:
    """The plan of the subscription ``executor`` was built for (its operation and variables),
    or None when the selection has something a plan does not cover."""
    if executor.middleware_manager is not None:
        return None
    schema = executor.schema
    root_type = schema.subscription_type
    if root_type is None:
        return None
    try:
        root = root_fields(executor, root_type)
    except GraphQLError:
        return None  # a directive's variable given null, say: the executor reports it
    if root is None or len(root) != 1:
        return None
    [(key, group)] = root.items()
    field = root_type.fields.get(first_node(group).name.value)
    if field is None or not yields_the_event(field):
        return None
    complete = _value(executor, field.type, group)
    return None if complete is None else Plan(key, complete)


def _value(executor: Executor[Any], type_: GraphQLOutputType, group: FieldGroup) -> Complete | None:
    """How a resolved value of ``type_`` is completed (graphql-core's complete_value)."""
    non_null = isinstance(type_, GraphQLNonNull)
    inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    if isinstance(inner, GraphQLLeafType):
        return _nullable(non_null, _leaf(inner))
    if isinstance(inner, GraphQLObjectType) and inner.is_type_of is None:
        fields = _object(executor, inner, group)
        return None if fields is None else _nullable(non_null, fields)
    return None  # lists, unions, interfaces


def _nullable(non_null: bool, complete: Complete) -> Complete:
    def value(resolved: Any) -> Any:
        if isinstance(resolved, Exception) or is_awaitable(resolved):
            raise Unplanned
        if resolved is None or resolved is Undefined:
            if non_null:
                raise Unplanned
            return None
        return complete(resolved)

    return value


def _leaf(type_: GraphQLLeafType) -> Complete:
    coerce = type_.coerce_output_value

    def leaf(resolved: Any) -> Any:
        coerced = coerce(resolved)
        if coerced is None or coerced is Undefined:
            raise Unplanned
        return coerced

    return leaf


def _object(
    executor: Executor[Any], type_: GraphQLObjectType, group: FieldGroup
) -> Complete | None:
    try:
        below = fields_below(executor, type_, group)
    except GraphQLError:
        return None
    if below is None:
        return None
    entries: list[tuple[str, Complete]] = []
    for key, subgroup in below.items():
        name = first_node(subgroup).name.value
        if name == "__typename":
            entries.append((key, _constant(type_.name)))
            continue
        field = type_.fields.get(name)
        complete = None if field is None else _field(executor, field, subgroup)
        if complete is None:
            return None
        entries.append((key, complete))

    def fields(source: Any) -> dict[str, Any]:
        return {key: complete(source) for key, complete in entries}

    return fields


def _field(executor: Executor[Any], field: GraphQLField, group: FieldGroup) -> Complete | None:
    """A field read from its source by strawberry's default resolver, then completed."""
    if field.args or first_node(group).arguments or not reads_an_attribute(field):
        return None
    complete = _value(executor, field.type, group)
    if complete is None:
        return None
    resolve = field.resolve
    assert resolve is not None  # reads_an_attribute says it is strawberry's

    def read(source: Any) -> Any:
        # strawberry's basic resolver ignores the info it is given.
        return complete(resolve(source, None))

    return read


def _constant(value: str) -> Complete:
    def constant(_source: Any) -> str:
        return value

    return constant
