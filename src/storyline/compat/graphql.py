"""graphql-core's executor internals that Storyline builds on.

Checked against graphql-core 3.3.2; tests/compat/test_graphql.py pins each behaviour below.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Sequence
from typing import Any

from graphql import Executor, FieldNode, GraphQLObjectType, GraphQLResolveInfoHelpers
from graphql.execution.collect_fields import (
    CollectedFields,
    FieldDetails,
    collect_fields,
    collect_subfields,
)
from graphql.pyutils import gather_with_cancel

# The field nodes the executor groups under one response name, as collect_fields gives them:
# what ``fields_below`` takes to collect the fields of their selection sets.
FieldGroup = list[FieldDetails]


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
    """``executor.build_per_event_executor(payload)``, with a memo of its own (``own_memo``)."""
    return own_memo(executor.build_per_event_executor(payload))


def own_memo(per_event: Executor[Any]) -> Executor[Any]:
    """Give a per-event executor an empty memo of its own, and return it.

    ``build_per_event_executor`` makes a shallow copy, which shares ``_relevant_sub_fields``,
    the memo of ``collect_subfields``, keyed by the identity of a list of field details (and
    keeping that list alive). Each execution collects its root fields into new lists, so
    every event would add entries to the memo of the executor it was copied from and
    nothing would ever remove them: a subscription, or a selection its watchers share,
    would grow with every event for as long as it lives. With a memo of its own the copy
    still serves the lists within its one execution, where the memo earns its keep.
    """
    per_event._relevant_sub_fields = {}
    return per_event


def root_fields(executor: Executor[Any], root: GraphQLObjectType) -> dict[str, FieldGroup] | None:
    """The fields of ``executor``'s operation on the ``root`` type, by response name, as the
    executor collects them for its variables (fragments spread, @include and @skip
    decided); None when it would defer some or give fragments variables of their own."""
    return _plain(
        collect_fields(
            executor.schema,
            executor.fragments,
            executor.variable_values,
            root,
            executor.operation,
        )
    )


def fields_below(
    executor: Executor[Any], type_: GraphQLObjectType, group: FieldGroup
) -> dict[str, FieldGroup] | None:
    """The fields of ``group``'s selection sets on an object of ``type_``, as the executor
    collects them (``collect_subfields``); None as for ``root_fields``."""
    return _plain(
        collect_subfields(
            executor.schema,
            executor.fragments,
            executor.variable_values,
            executor.operation,
            type_,
            group,
        )
    )


def first_node(group: FieldGroup) -> FieldNode:
    """The field node the executor reads a group's name and arguments from."""
    return group[0].node


def _plain(collected: CollectedFields) -> dict[str, FieldGroup] | None:
    if (
        collected.new_defer_usages
        or collected.forbidden_directive_instances
        or any(
            details.defer_usage is not None or details.fragment_variable_values is not None
            for group in collected.grouped_field_set.values()
            for details in group
        )
    ):
        return None
    return dict(collected.grouped_field_set)
