"""Money under real concurrency: many simultaneous requests against one account or project."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from storyline.persistence import reservations
from storyline.persistence.database import DriverStatement, Transaction
from storyline.persistence.projects import NewProject
from tests.support import Api, books, new_user, storyline
from tests.support.fakes import FakeVideoService


async def test_50_simultaneous_charges_on_400_credits_make_exactly_10_projects(
    database_url: str, fake_upstream: tuple[FakeVideoService, str], engine: AsyncEngine
) -> None:
    # An instance whose upstream calls may take their time: 50 requests at once on two
    # cores can hold the in-process fake past the suite's 1 s timeout, which would leave a
    # paid project PENDING for the sweeper (correctly, but not what this test is about).
    async with storyline(database_url, upstream_url=fake_upstream[1], upstream_timeout=10) as api:
        user = new_user()
        await api.grant(user, 300)  # 100 sign-up credits + 300
        bodies = await asyncio.gather(
            *(api.generate(user, quality="SD", prompt=f"Story {n}") for n in range(50))
        )
    outcomes = Counter(
        body["errors"][0]["extensions"]["code"] if "errors" in body else "OK" for body in bodies
    )
    assert outcomes == {"OK": 10, "INSUFFICIENT_CREDITS": 40}
    state = await books(engine, user)
    assert state.balance == 0
    assert len(state.projects) == 10
    assert all(status == "PROCESSING" for _, status in state.projects)
    assert Counter(kind for kind, _, _ in state.ledger) == {"GRANT": 2, "CHARGE": 10}


async def test_20_simultaneous_failed_reports_refund_exactly_once(
    api: Api, engine: AsyncEngine
) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    bodies = await asyncio.gather(
        *(
            api.report(projectId=project["id"], status="FAILED", errorMessage=f"crash {n}")
            for n in range(20)
        )
    )
    assert all("errors" not in body for body in bodies), bodies
    versions = {body["data"]["updateStatus"]["version"] for body in bodies}
    assert versions == {project["version"] + 1}  # one change; the other 19 changed nothing
    state = await books(engine, user)
    assert state.balance == 100
    assert Counter(kind for kind, _, _ in state.ledger) == {"GRANT": 1, "CHARGE": 1, "REFUND": 1}


async def test_simultaneous_progress_reports_leave_the_newest_and_lose_none(
    api: Api, engine: AsyncEngine
) -> None:
    # Each report is decided from the row as read and written only over that version: one
    # that lost the race to another is decided again, never written over the newer row.
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    order = list(range(1, 41))
    random.Random(7).shuffle(order)  # newer reports overtaking older ones mid-flight
    bodies = await asyncio.gather(
        *(
            api.report(projectId=project["id"], status="PROCESSING", progress=n, stage=f"s{n}")
            for n in order
        )
    )
    assert all("errors" not in body for body in bodies), bodies
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT progress, stage, version FROM projects WHERE id = :id"),
                {"id": project["id"]},
            )
        ).one()
    assert (row.progress, row.stage) == (40, "s40")
    # Every answer is a version that was committed, and the newest is the row's.
    answered = {body["data"]["updateStatus"]["version"] for body in bodies}
    assert max(answered) == row.version
    assert row.version - project["version"] <= 40


async def test_concurrent_first_requests_create_one_account_with_one_grant(
    api: Api, engine: AsyncEngine
) -> None:
    user = new_user()
    await asyncio.gather(*(api.generate(user, quality="SD") for _ in range(10)))
    state = await books(engine, user)
    assert Counter(kind for kind, _, _ in state.ledger)["GRANT"] == 1
    assert len(state.projects) == 2
    assert state.balance == 20


async def test_a_refusal_under_concurrent_charges_carries_the_balance_that_refused_it(
    api: Api, engine: AsyncEngine
) -> None:
    user = new_user()
    await api.grant(user, 300)
    for _ in range(3):  # a refusal races the charges it lost to; give it a few rounds
        charges = (api.generate(user, quality="SD", prompt=f"Story {n}") for n in range(30))
        bodies, _ = await asyncio.gather(asyncio.gather(*charges), api.grant(user, 200))
        refusals = [body["errors"][0]["extensions"] for body in bodies if "errors" in body]
        assert refusals, "the credits ran out"
        for refusal in refusals:
            assert refusal["code"] == "INSUFFICIENT_CREDITS"
            assert 0 <= refusal["balance"] < refusal["required"] == 40, refusal
    state = await books(engine, user)
    assert state.balance is not None
    assert state.balance + 40 * len(state.projects) == 100 + 300 + 3 * 200


class GrantAfterFirstStatement:
    """A transaction in which credits are granted, and committed elsewhere, right after its
    first statement: the moment a concurrent grant can land between a refused debit and
    what follows it."""

    def __init__(self, tx: Transaction, grant: Callable[[], Awaitable[None]]) -> None:
        self.tx, self.grant, self.granted = tx, grant, False

    async def fetchrow(self, statement: DriverStatement, values: Mapping[str, object]) -> Any:
        row = await self.tx.fetchrow(statement, values)
        if not self.granted:
            self.granted = True
            await self.grant()
        return row

    async def fetchval(self, statement: DriverStatement, values: Mapping[str, object]) -> Any:
        return await self.tx.fetchval(statement, values)


async def test_credits_granted_after_a_refused_debit_pay_for_the_project(
    api: Api, engine: AsyncEngine
) -> None:
    user = new_user()
    assert "errors" not in await api.generate(user, quality="FULL_HD")  # 100 - 80 = 20 left
    new = NewProject(
        id=uuid.uuid4(),
        user_id=user,
        credits_used=40,
        prompt="A cat",
        quality="SD",
        aspect_ratio="LANDSCAPE_16_9",
        image_model="default",
        seed=None,
        idempotency_key=None,
        request_fingerprint="test",
    )
    async with api.services.database.transaction() as tx:
        wrapped: Any = GrantAfterFirstStatement(tx, lambda: api.grant(user, 100))
        project = await reservations.reserve(wrapped, project=new)
    assert project.id == new.id
    state = await books(engine, user)
    assert state.balance == 20 + 100 - 40
    assert state.ledger[-2:] == [("GRANT", 100, None), ("CHARGE", -40, str(new.id))]
