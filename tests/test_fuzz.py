"""schemathesis's GraphQL mode against the running app: no 5xx, no internal error.

CI runs a bounded number of cases per root field; a longer run:

    make fuzz            # STORYLINE_FUZZ_EXAMPLES=1000 per root field
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from storyline.auth import Role
from tests.support import bearer
from tests.support.threaded import World

EXAMPLES = int(os.environ.get("STORYLINE_FUZZ_EXAMPLES", "25"))
ROLES = {"updateStatus": Role.PIPELINE, "grantCredits": Role.ADMIN}
FIELDS = ["me", "project", "projects", "price", "generateStory", "updateStatus", "grantCredits"]


@pytest.fixture(scope="module")
def world(server_url: str) -> Iterator[World]:
    world = World(server_url, upstream_timeout=0.2)
    yield world
    world.close()


@pytest.fixture(scope="module")
def operations(world: World) -> dict[str, Any]:
    schema = schemathesis.graphql.from_url(f"{world.api.url}/graphql")
    found = {}
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        found[operation.label.split(".")[-1]] = operation
    return found


def test_every_root_field_is_fuzzed(operations: dict[str, Any]) -> None:
    assert set(FIELDS) <= set(operations)


@pytest.mark.parametrize("field", FIELDS)
def test_no_input_makes_the_server_fail(operations: dict[str, Any], field: str) -> None:
    auth = {"Authorization": bearer("fuzzer", ROLES.get(field, Role.USER))}
    calls = 0

    @given(case=operations[field].as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        nonlocal calls
        calls += 1
        response = case.call(headers=auth)
        assert response.status_code < 500, response.text
        for error in response.json().get("errors") or []:
            code = (error.get("extensions") or {}).get("code")
            assert code != "INTERNAL_SERVER_ERROR", (case.body, error)

    check()
    assert calls > 0
