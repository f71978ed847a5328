"""idempotencyKey: the same key and input make one project, charged once, even when racing."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Api, books, new_user
from tests.support.fakes import FakeVideoService


async def test_a_retry_returns_the_same_project_charged_once(
    api: Api, engine: AsyncEngine, fake: FakeVideoService
) -> None:
    user = new_user()
    first = (await api.generate(user, idempotencyKey="retry-1"))["data"]["generateStory"]
    again = (await api.generate(user, idempotencyKey="retry-1"))["data"]["generateStory"]
    assert again["id"] == first["id"]
    assert again["status"] == "PROCESSING"
    assert len(fake.calls_for(first["id"])) == 1
    assert (await books(engine, user)).balance == 40


async def test_the_same_key_with_other_input_is_a_conflict_and_changes_nothing(
    api: Api, engine: AsyncEngine
) -> None:
    user = new_user()
    await api.generate(user, idempotencyKey="k")
    before = await books(engine, user)
    for other in (
        {"prompt": "A dog"},
        {"quality": "SD"},
        {"seed": 7},
        {"aspectRatio": "SQUARE_1_1"},
    ):
        body = await api.generate(user, idempotencyKey="k", **other)
        assert body["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_CONFLICT", other
        assert body["data"] is None
    assert await books(engine, user) == before


async def test_keys_belong_to_their_user(api: Api, engine: AsyncEngine) -> None:
    alice, bob = new_user(), new_user()
    a = (await api.generate(alice, idempotencyKey="shared"))["data"]["generateStory"]
    b = (await api.generate(bob, idempotencyKey="shared", prompt="Other"))["data"]["generateStory"]
    assert a["id"] != b["id"]
    assert (await books(engine, alice)).balance == (await books(engine, bob)).balance == 40


async def test_a_replay_is_answered_even_when_the_balance_is_spent(api: Api) -> None:
    user = new_user()
    first = await api.generate(user, quality="FULL_HD", idempotencyKey="x")
    again = await api.generate(user, quality="FULL_HD", idempotencyKey="x")  # 20 credits left
    assert "errors" not in again, again
    assert again["data"]["generateStory"]["id"] == first["data"]["generateStory"]["id"]


async def test_racing_requests_with_one_key_make_one_project(
    api: Api, engine: AsyncEngine, fake: FakeVideoService
) -> None:
    user = new_user()
    await api.grant(user, 900)
    bodies = await asyncio.gather(
        *(api.generate(user, quality="SD", idempotencyKey="race") for _ in range(20))
    )
    ids = {body["data"]["generateStory"]["id"] for body in bodies}
    assert len(ids) == 1
    [project_id] = ids
    state = await books(engine, user)
    assert state.projects == [(project_id, "PROCESSING")]
    assert state.balance == 1000 - 40
    assert len(fake.calls_for(project_id)) == 1
