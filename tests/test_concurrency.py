"""Money under real concurrency: many simultaneous requests against one account or project."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Api, books, new_user


async def test_50_simultaneous_charges_on_400_credits_make_exactly_10_projects(
    api: Api, engine: AsyncEngine
) -> None:
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


async def test_concurrent_first_requests_create_one_account_with_one_grant(
    api: Api, engine: AsyncEngine
) -> None:
    user = new_user()
    await asyncio.gather(*(api.generate(user, quality="SD") for _ in range(10)))
    state = await books(engine, user)
    assert Counter(kind for kind, _, _ in state.ledger)["GRANT"] == 1
    assert len(state.projects) == 2
    assert state.balance == 20
