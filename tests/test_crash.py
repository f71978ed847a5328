"""Crash safety: the server is killed with SIGKILL at each step of generateStory, restarted,
and after one sweep every project is settled and the money is exact."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storyline.faults import POINTS
from storyline.persistence.engine import sqlalchemy_url
from storyline.persistence.invariants import violations
from tests.support import GENERATE, books, client, new_user, storyline, token
from tests.support.databases import migrated_database
from tests.support.fakes import FakeVideoService
from tests.support.processes import served, server_env


async def statuses(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT status FROM projects"))).scalars())


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
async def test_a_crash_at_any_step_loses_no_credit_and_no_paid_job(
    server_url: str, fake_upstream: tuple[FakeVideoService, str], tmp_path: Path, point: str
) -> None:
    fake, upstream = fake_upstream
    database_url = await migrated_database(server_url)
    user = new_user()
    env = server_env(database_url, upstream_url=upstream, crash_at=point)
    calls_before = len(fake.calls)

    async with served(env, tmp_path / "server.log") as doomed:
        async with client(doomed.url) as http:
            with pytest.raises(httpx.TransportError):  # the process dies mid-request
                await http.request(GENERATE, {"input": {"prompt": "A crash"}}, auth=token(user))
        assert await doomed.exited() == -9, doomed.output
    assert (len(fake.calls) > calls_before) == (point == "generate-after-upstream-accepted")

    engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        # Restarted (in-process here): its start-up sweep is the one sweep that settles it.
        await asyncio.sleep(0.5)
        async with storyline(
            database_url, upstream_url=upstream, upstream_timeout=0.3, pending_timeout=0.4
        ):
            for _ in range(50):
                if "PENDING" not in await statuses(engine):
                    break
                await asyncio.sleep(0.1)
        state = await books(engine, user)
        async with engine.connect() as conn:
            assert await violations(conn) == {}
        settled = await statuses(engine)
    finally:
        await engine.dispose()

    if point == "generate-before-charge-commit":
        # Nothing committed: no account, no project, no charge.
        assert (state.balance, state.projects, state.ledger) == (None, [], [])
    else:
        # Charged, never confirmed: failed and refunded by the sweep.
        assert settled == ["FAILED"]
        assert state.balance == 100
        kinds = Counter(kind for kind, _, _ in state.ledger)
        assert kinds == {"GRANT": 1, "CHARGE": 1, "REFUND": 1}
