"""accountChanges under the faults and the traffic of production.

- two ``storyline serve`` processes on one database: a watcher on one sees a project
  created through the other appear, complete, and its balance;
- a listener outage: changes made while nobody listens arrive after it, balance included,
  and nothing already sent is sent again;
- 500 subscribe/unsubscribe cycles leave no task, mailbox or count behind;
- an expired token ends the subscription with an error.

The money invariants are checked after every test (conftest.py).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from tests.support import Api, new_user, token
from tests.support.books import money_violations
from tests.support.databases import migrated_database
from tests.support.fakes import FakeVideoService
from tests.support.outages import listened_storyline, wait_for_readiness
from tests.support.processes import two_instances
from tests.support.tasks import started_since
from tests.support.waiting import eventually, settled
from tests.support.watch import (
    check_order,
    connected,
    is_balance,
    next_change,
    next_message,
    start_account,
    until,
)

WAIT = 10.0


async def test_a_watcher_on_one_instance_sees_what_another_instance_did(
    server_url: str, fake_upstream: tuple[FakeVideoService, str], tmp_path: Path
) -> None:
    database_url = await migrated_database(server_url)
    async with two_instances(database_url, fake_upstream[1], tmp_path) as (one, two):
        user = new_user()
        async with connected(one.url, token(user)) as ws:
            await start_account(ws)
            signup = await next_change(ws, within=WAIT)
            created = (await two.generate(user))["data"]["generateStory"]
            done = await two.report(projectId=created["id"], status="COMPLETED")
            assert "errors" not in done, done
            changes = await until(
                ws, lambda seen: any(c.get("status") == "COMPLETED" for c in seen), within=30
            )
        check_order([signup, *changes])
        [charge] = [c for c in changes if is_balance(c)]
        assert charge["balance"] == signup["balance"] - created["creditsUsed"]
        assert changes[-1]["projectId"] == created["id"]
        assert await money_violations(database_url) == {}


async def test_after_a_listener_outage_what_changed_meanwhile_is_sent_once(
    server_url: str, fake_upstream: tuple[FakeVideoService, str]
) -> None:
    async with listened_storyline(server_url, fake_upstream[1]) as listened:
        api, writer = listened.api, listened.writer
        user = new_user()
        await api.grant(user, 500)
        heard, unheard = [(await api.generate(user))["data"]["generateStory"] for _ in range(2)]
        async with connected(api.url, token(user)) as ws:
            await start_account(ws)
            first = await until(ws, lambda seen: len(seen) == 3)
            # A change heard live before the outage: it must not come again after it.
            await api.report(projectId=heard["id"], status="PROCESSING", progress=10)
            [live] = await until(ws, lambda seen: bool(seen))
            assert (live["projectId"], live["progress"]) == (heard["id"], 10)

            async with listened.outage():
                await wait_for_readiness(api, 503, WAIT)
                # Changes nobody hears: a project moves and credits are granted.
                await writer.execute(
                    "UPDATE projects SET progress = 55 WHERE id = $1",
                    uuid.UUID(unheard["id"]),
                )
                async with writer.transaction():
                    balance = await writer.fetchval(
                        "UPDATE accounts SET balance = balance + 7 WHERE user_id = $1"
                        " RETURNING balance",
                        user,
                    )
                    await writer.execute(
                        "INSERT INTO ledger (user_id, kind, amount, balance_after, reason)"
                        " VALUES ($1, 'GRANT', 7, $2, 'while away')",
                        user,
                        balance,
                    )

            resynced = await until(ws, lambda seen: len(seen) == 2, within=20)
            with_balance = [c for c in resynced if is_balance(c)]
            assert [(c["balance"], c["entry"]["reason"]) for c in with_balance] == [
                (balance, "while away")
            ]
            [moved] = [c for c in resynced if not is_balance(c)]
            assert (moved["projectId"], moved["progress"]) == (unheard["id"], 55)
            # Nothing more: the project heard before the outage is not sent again.
            try:
                extra = await next_message(ws, within=0.5)
            except TimeoutError:
                extra = None
            assert extra is None, extra
            check_order([*first, live, *resynced])


def _counts(api: Api) -> tuple[int, int, int, int]:
    hub = api.services.broadcast
    owners = sum(hub.by_owner.values())
    return len(asyncio.all_tasks()), hub.subscriber_count, len(hub.accounts), owners


async def test_five_hundred_watchers_come_and_go_and_leave_nothing_behind(api: Api) -> None:
    users = [new_user() for _ in range(4)]
    for user in users:
        await api.grant(user, 1)
    before = await settled(lambda: _counts(api))
    tasks = asyncio.all_tasks()
    during: list[tuple[int, int, int, int]] = []
    gate = asyncio.Semaphore(25)

    async def cycle(n: int) -> None:
        async with gate, connected(api.url, token(users[n % len(users)])) as ws:
            await start_account(ws)
            first = await next_change(ws, within=WAIT)
            assert first["__typename"] == "BalanceChange"
            during.append(_counts(api))
            if n % 2 == 0:
                ws.transport.abort()  # the TCP connection just goes: no close frame

    async with asyncio.timeout(120):
        await asyncio.gather(*(cycle(n) for n in range(500)))
    assert len(during) == 500
    # While a subscription is live it is counted: a leak could not hide from these numbers.
    assert all(subs > before[1] and owned > before[3] for _, subs, _, owned in during)
    assert max(accounts for _, _, accounts, _ in during) >= before[2] + 2
    await eventually(lambda: _counts(api)[1:] == before[1:] and not started_since(tasks), within=5)
    assert _counts(api)[1:] == before[1:], f"before {before}, after {_counts(api)}"
    assert not started_since(tasks), started_since(tasks)


async def test_an_expired_token_ends_the_subscription_with_an_error(api: Api) -> None:
    user = new_user()
    async with connected(api.url, token(user, ttl=1.5)) as ws:
        await start_account(ws)
        await next_change(ws, within=WAIT)
        await asyncio.sleep(1.6)
        await api.grant(user, 2)  # news, which the expired token may no longer receive
        message: dict[str, Any] = await next_message(ws, within=WAIT)
        assert message["type"] == "next", message
        assert message["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert (await next_message(ws, within=WAIT))["type"] == "complete"
