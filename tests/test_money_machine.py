"""Property-based: random interleavings of generateStory, updateStatus, grantCredits and sweeps.

After every step the money invariants hold and no project's status or version has moved
backwards. CI runs a bounded number of examples; a long run:

    STORYLINE_HYPOTHESIS_EXAMPLES=2000 .venv/bin/pytest tests/test_money_machine.py
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from storyline.domain.lifecycle import Status
from storyline.jobs.sweeper import sweep
from storyline.persistence.invariants import violations
from tests.support import new_user
from tests.support.threaded import World

T = TypeVar("T")
EXAMPLES = int(os.environ.get("STORYLINE_HYPOTHESIS_EXAMPLES", "20"))
USERS = [new_user() for _ in range(3)]
STATUSES = [status.value for status in Status]
TAGS = ["", "", "", " [500]", " [hang]", " [complete-first]", " [fail-first]"]


@pytest.fixture(scope="module")
def world(server_url: str) -> Iterator[World]:
    world = World(
        server_url,
        upstream_timeout=0.15,
        pending_timeout=0.2,
        processing_timeout=0.5,
        sweep_interval=3600,
    )
    yield world
    world.close()


class MoneyMachine(RuleBasedStateMachine):
    world: World
    projects = Bundle("projects")

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, tuple[int, str]] = {}  # project id -> (version, status)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.world.loop.run(coroutine)

    @initialize()
    def fund(self) -> None:
        for user in USERS:
            self.run(self.world.api.grant(user, 100))

    @rule(
        target=projects,
        user=st.sampled_from(USERS),
        quality=st.sampled_from(["SD", "HD", "FULL_HD"]),
        tag=st.sampled_from(TAGS),
        key=st.sampled_from([None, "k1", "k2"]),
        copies=st.integers(1, 3),
    )
    def generate(self, user: str, quality: str, tag: str, key: str | None, copies: int) -> Any:
        fields: dict[str, Any] = {"quality": quality, "prompt": f"Story{tag}"}
        if key is not None:
            fields["idempotencyKey"] = key
        bodies = self.run(
            _gather(*(self.world.api.generate(user, **fields) for _ in range(copies)))
        )
        made = set()
        for body in bodies:
            if body.get("data"):
                made.add(body["data"]["generateStory"]["id"])
            else:
                code = body["errors"][0]["extensions"]["code"]
                assert code in {"INSUFFICIENT_CREDITS", "UPSTREAM_FAILED", "IDEMPOTENCY_CONFLICT"}
                if code == "UPSTREAM_FAILED":
                    made.add(body["errors"][0]["extensions"]["projectId"])
        if key is not None and len(bodies) > 1:
            assert len(made) <= 1, bodies  # one key, one project
        return multiple(*made)

    @rule(
        project=projects,
        status=st.sampled_from(STATUSES),
        progress=st.none() | st.integers(0, 100),
        copies=st.integers(1, 4),
    )
    def report(self, project: str, status: str, progress: int | None, copies: int) -> None:
        fields: dict[str, Any] = {"projectId": project, "status": status}
        if progress is not None:
            fields["progress"] = progress
        bodies = self.run(_gather(*(self.world.api.report(**fields) for _ in range(copies))))
        for body in bodies:
            if "errors" in body:
                assert body["errors"][0]["extensions"]["code"] == "INVALID_TRANSITION", body

    @rule(user=st.sampled_from(USERS), amount=st.integers(1, 200))
    def grant(self, user: str, amount: int) -> None:
        self.run(self.world.api.grant(user, amount))

    @rule()
    def sweep(self) -> None:
        self.run(sweep(self.world.api.services))

    @rule(project=projects, user=st.sampled_from(USERS))
    def race(self, project: str, user: str) -> None:
        """A report, a new story and a sweep at the same moment."""
        api = self.world.api
        self.run(
            _gather(
                api.report(projectId=project, status="FAILED", errorMessage="race"),
                api.generate(user, quality="SD"),
                sweep(api.services),
            )
        )

    @invariant()
    def money_is_exact(self) -> None:
        assert self.run(_violations(self.world.engine)) == {}

    @invariant()
    def nothing_moves_backwards(self) -> None:
        rank = {status: Status(status).rank for status in STATUSES}
        for project_id, version, status in self.run(_projects(self.world.engine)):
            before = self.seen.get(project_id)
            if before is not None:
                old_version, old_status = before
                assert version >= old_version
                assert rank[status] >= rank[old_status]
                if Status(old_status).terminal:
                    assert status == old_status
            self.seen[project_id] = (version, status)


async def _gather(*coroutines: Coroutine[Any, Any, T]) -> list[T]:
    return list(await asyncio.gather(*coroutines))


async def _violations(engine: AsyncEngine) -> dict[str, list[tuple[object, ...]]]:
    async with engine.connect() as conn:
        return await violations(conn)


async def _projects(engine: AsyncEngine) -> list[tuple[str, int, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id::text, version, status FROM projects"))
        return [(row[0], row[1], row[2]) for row in rows]


def test_money_stays_exact_under_any_interleaving(world: World) -> None:
    MoneyMachine.world = world
    run_state_machine_as_test(
        MoneyMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
