"""A selection's plan (schema/plans.py) against graphql-core's execution of the same event.

hypothesis writes the documents (tests/support/live_documents.py: aliases, fragments,
@include/@skip on literals and variables, __typename) and the events, well-formed ones
and ones the executor answers with errors (a null in a non-null field, an Int out of
range). Whenever the plan gives a payload it is the executor's, byte for byte; when it
gives none the executor reports errors; and for a well-formed event every projectStatus
selection has a plan that gives one (the plan cannot pass by never answering).
tests/test_fanout_equivalence.py then holds the whole live path equal to strawberry's.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from storyline.compat.strawberry import build_executor
from storyline.domain.lifecycle import Status
from storyline.live.events import ProjectEvent
from storyline.schema.fanout import LIVE, Selection, Shape, live_field
from storyline.schema.plans import plan
from storyline.schema.roots import build_schema
from tests.support.live_documents import Subscription, subscriptions

EXAMPLES = int(os.environ.get("STORYLINE_PLAN_EXAMPLES", "300"))
SCHEMA = build_schema()
INT_MAX = 2**31 - 1  # GraphQL's Int

texts = st.none() | st.text(max_size=40)
events = st.builds(
    ProjectEvent,
    project_id=st.uuids().map(str),
    user_id=st.just("someone"),
    xid=st.none() | st.integers(min_value=1, max_value=2**40),
    status=st.sampled_from(Status),
    version=st.integers(min_value=1, max_value=INT_MAX),
    progress=st.none() | st.integers(min_value=0, max_value=100),
    stage=texts,
    error_message=texts,
    result_url=texts,
    truncated=st.booleans(),
    updated_at=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    ),
)
# What a well-formed event never holds; the executor answers each with an error.
BROKEN: list[dict[str, Any]] = [
    {"status": None},
    {"version": None},
    {"version": INT_MAX + 1},
    {"updated_at": None},
    {"project_id": None},
    {"progress": "most"},
]


def selection_of(subscription: Subscription) -> Selection | None:
    """The selection the live path builds for this document (None: it serves none)."""
    request = subscription.payload(str(uuid.uuid4()))
    query, variables = request["query"], request["variables"]
    name = request.get("operationName")
    checked = SCHEMA.documents.check(query)
    if not checked.valid or checked.document is None:
        return None
    root = live_field(checked.document, name)
    if root is None:
        return None
    executor = build_executor(SCHEMA, checked.document, None, variables, name)
    if isinstance(executor, list):
        return None
    field = LIVE[root.name.value]
    return Selection(query, checked.document, executor, field, Shape(frozenset()), plan(executor))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(
    subscriptions().filter(lambda subscription: subscription.field == "projectStatus"),
    events,
    st.none() | st.sampled_from(BROKEN),
)
def test_a_plan_gives_the_executor_s_payload_or_none_where_it_reports_errors(
    subscription: Subscription, event: ProjectEvent, broken: dict[str, Any] | None
) -> None:
    selection = selection_of(subscription)
    assume(selection is not None)
    assert selection is not None
    assert selection.plan is not None, subscription.document
    if broken is not None:
        event = replace(event, **broken)
    shown = selection.field.shown(event)

    planned = selection.plan.payload(shown)
    executed = asyncio.run(selection.executed(SCHEMA, shown))

    if broken is None:
        assert planned == executed
    elif planned is None:
        assert '"errors":' in executed
    else:
        assert planned == executed  # a broken value in a field the selection skips


def test_a_union_gets_no_plan_and_is_left_to_the_executor() -> None:
    subscription = Subscription(
        "subscription { accountChanges { ... on BalanceChange { balance } } }",
        {},
        None,
        "accountChanges",
    )
    selection = selection_of(subscription)
    assert selection is not None
    assert selection.plan is None


def test_a_directive_s_variable_given_null_is_left_to_the_executor_s_error() -> None:
    subscription = Subscription(
        "subscription($id: ID!, $b: Boolean = true) "
        "{ projectStatus(projectId: $id) { status @include(if: $b) } }",
        {"b": None},
        None,
    )
    selection = selection_of(subscription)
    assert selection is not None
    assert selection.plan is None
    event = ProjectEvent(
        project_id=str(uuid.uuid4()),
        user_id="someone",
        xid=None,
        status=Status.PENDING,
        version=1,
        progress=None,
        stage=None,
        error_message=None,
        result_url=None,
        truncated=False,
        updated_at=datetime(2026, 12, 2, tzinfo=UTC),
    )
    executed = asyncio.run(selection.executed(SCHEMA, selection.field.shown(event)))
    assert '"errors":' in executed
