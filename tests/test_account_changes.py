"""accountChanges at the contract's level (account-changes.graphql).

- first events: the balance with its newest entry, then the projects not terminal, or with
  ``since`` every project changed after it, terminal ones included;
- a project created elsewhere appears, moves and ends; a FAILED one shows its refund;
- per project: version order and no duplicates, under concurrent changes and while
  watchers subscribe in the middle of them; balances never go back;
- the server never completes it; an expired token ends it;
- the per-user and per-connection limits count it with projectStatus (test_limits.py);
- both subprotocols, on the fan-out path and strawberry's own.

The money invariants are checked after every test (conftest.py).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from storyline.auth import Role
from storyline.persistence.snapshots import Snapshot
from tests.support import Api, new_user, token
from tests.support.watch import (
    LEGACY_WS,
    TRANSPORT_WS,
    check_order,
    connected,
    is_balance,
    next_change,
    next_message,
    start_account,
    until,
)

PROTOCOLS = [TRANSPORT_WS, LEGACY_WS]
WAIT = 10.0
ME = "{ me { balance ledger(first: 1) { edges { node { id kind amount balanceAfter } } } } }"


async def nothing_until_a_grant(api: Api, ws: ClientConnection, user: str) -> None:
    """The next message is the change a grant makes now: nothing was pending before it,
    and the subscription is still open."""
    await api.grant(user, 1)
    message = await next_message(ws, within=WAIT)
    assert message["type"] in ("next", "data"), message
    change = message["payload"]["data"]["accountChanges"]
    assert (change["__typename"], change["entry"]["kind"]) == ("BalanceChange", "GRANT"), change
    assert change["entry"]["amount"] == 1, change


async def newest_entry(api: Api, user: str) -> tuple[int, dict[str, Any]]:
    me = (await api.data(ME, auth=token(user)))["me"]
    return me["balance"], me["ledger"]["edges"][0]["node"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_first_the_balance_then_each_project_not_terminal(api: Api, protocol: str) -> None:
    user = new_user()
    await api.grant(user, 1000)
    running = (await api.generate(user))["data"]["generateStory"]
    finished = (await api.generate(user))["data"]["generateStory"]
    assert "errors" not in await api.report(projectId=finished["id"], status="COMPLETED")
    balance, entry = await newest_entry(api, user)

    async with connected(api.url, token(user), protocol) as ws:
        await start_account(ws)
        first = await next_change(ws, within=WAIT)
        assert first["__typename"] == "BalanceChange"
        assert first["balance"] == balance
        assert {k: first["entry"][k] for k in entry} == entry
        assert first["entry"]["kind"] == "CHARGE"
        second = await next_change(ws, within=WAIT)
        assert (second["__typename"], second["projectId"]) == ("ProjectStatusEvent", running["id"])
        assert (second["status"], second["version"]) == ("PROCESSING", running["version"])
        # Nothing else: the finished project is not sent, and the server does not complete:
        # the next message is the next change of the account.
        await nothing_until_a_grant(api, ws, user)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_since_catches_up_on_every_project_changed_terminal_ones_included(
    api: Api, protocol: str
) -> None:
    user = new_user()
    await api.grant(user, 1000)
    old = (await api.generate(user))["data"]["generateStory"]
    assert "errors" not in await api.report(projectId=old["id"], status="COMPLETED")
    async with connected(api.url, token(user), protocol) as ws:
        await start_account(ws)
        await next_change(ws, within=WAIT)  # the balance; nothing is running
        await nothing_until_a_grant(api, ws, user)
    away = datetime.now(UTC).isoformat()
    done = (await api.generate(user))["data"]["generateStory"]
    assert "errors" not in await api.report(projectId=done["id"], status="FAILED")
    running = (await api.generate(user))["data"]["generateStory"]

    async with connected(api.url, token(user), protocol) as ws:
        await start_account(ws, since=away)
        changes = [await next_change(ws, within=WAIT) for _ in range(3)]
        await nothing_until_a_grant(api, ws, user)
    balance, projects = changes[0], changes[1:]
    assert is_balance(balance)
    assert (balance["entry"]["kind"], balance["entry"]["projectId"]) == ("CHARGE", running["id"])
    assert [(p["projectId"], p["status"]) for p in projects] == [
        (done["id"], "FAILED"),
        (running["id"], "PROCESSING"),
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_project_made_elsewhere_appears_and_a_failed_one_is_refunded(
    api: Api, protocol: str
) -> None:
    user = new_user()
    async with connected(api.url, token(user), protocol) as ws:
        await start_account(ws)
        start_balance = (await next_change(ws, within=WAIT))["balance"]

        project = (await api.generate(user))["data"]["generateStory"]
        changes = await until(
            ws,
            lambda seen: (
                any(c.get("status") == "PROCESSING" for c in seen)
                and any(is_balance(c) for c in seen)
            ),
        )
        [charge] = [c for c in changes if is_balance(c)]
        assert charge["entry"]["kind"] == "CHARGE"
        assert charge["entry"]["projectId"] == project["id"]
        assert charge["balance"] == start_balance - project["creditsUsed"]

        assert "errors" not in await api.report(
            projectId=project["id"], status="FAILED", errorMessage="the renderer fell over"
        )
        later = await until(
            ws,
            lambda seen: (
                any(c.get("status") == "FAILED" for c in seen) and any(is_balance(c) for c in seen)
            ),
        )
        [refund] = [c for c in later if is_balance(c)]
        assert refund["entry"]["kind"] == "REFUND"
        assert refund["balance"] == start_balance
        [failed] = [c for c in later if not is_balance(c)]
        assert failed["errorMessage"] == "the renderer fell over"
        check_order([*changes, *later])
        # A terminal project does not end the subscription.
        await api.grant(user, 5)
        [granted] = await until(ws, lambda seen: bool(seen))
        assert (granted["balance"], granted["entry"]["kind"]) == (start_balance + 5, "GRANT")


async def test_per_project_order_and_no_duplicates_while_watchers_join_mid_change(
    api: Api,
) -> None:
    user = new_user()
    await api.grant(user, 1000)
    projects = [(await api.generate(user))["data"]["generateStory"] for _ in range(4)]
    pipeline = token("pipeline", Role.PIPELINE)
    reports = 15

    async def drive(project_id: str) -> None:
        for progress in range(1, reports + 1):
            report = {"projectId": project_id, "status": "PROCESSING", "progress": progress}
            await api.post(REPORT_QUERY, {"input": report}, auth=pipeline)
        await api.report(projectId=project_id, status="COMPLETED")

    async def watch(delay: float) -> list[dict[str, Any]]:
        await asyncio.sleep(delay)
        async with connected(api.url, token(user)) as ws:
            await start_account(ws)

            def finished(seen: list[dict[str, Any]]) -> bool:
                done = {c["projectId"] for c in seen if c.get("status") == "COMPLETED"}
                return len(done) == len(projects)

            return await until(ws, finished, within=30)

    watchers = [asyncio.create_task(watch(delay)) for delay in (0, 0.05, 0.1, 0.2, 0.3)]
    await asyncio.gather(*(drive(p["id"]) for p in projects))
    for changes in await asyncio.gather(*watchers):
        check_order(changes)
        last = {c["projectId"]: c for c in changes if not is_balance(c)}
        for project in projects:
            row = await api.data(
                "query ($id: ID!) { project(id: $id) { status version } }",
                {"id": project["id"]},
                auth=token(user),
            )
            assert (last[project["id"]]["status"], last[project["id"]]["version"]) == (
                row["project"]["status"],
                row["project"]["version"],
            )


REPORT_QUERY = """
mutation ($input: UpdateStatusInput!) { updateStatus(input: $input) { id version } }
"""


async def test_only_the_callers_own_account_is_watched(api: Api) -> None:
    user, stranger = new_user(), new_user()
    async with connected(api.url, token(user)) as ws:
        await start_account(ws)
        await next_change(ws, within=WAIT)
        await api.generate(stranger)
        await api.grant(stranger, 3)
        # Notifications arrive in commit order: had the stranger's been routed here, they
        # would come before this one.
        await nothing_until_a_grant(api, ws, user)


async def test_since_out_of_range_is_a_clear_client_error(api: Api) -> None:
    async with connected(api.url, token(new_user())) as ws:
        await start_account(ws, since="0001-01-01T00:00:00+14:00")
        message = await next_message(ws, within=WAIT)
        errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
        assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", message


async def test_the_first_changes_of_a_new_account_create_it(api: Api) -> None:
    user = new_user()
    async with connected(api.url, token(user)) as ws:
        await start_account(ws)
        first = await next_change(ws, within=WAIT)
    assert first["balance"] == api.services.settings.signup_credits
    assert first["entry"]["kind"] == "GRANT"


@pytest.mark.parametrize("text", ["100:105:", "100:105:101,103", "7:7:"])
def test_a_snapshot_reads_back_as_postgresql_wrote_it(text: str) -> None:
    assert Snapshot.parse(text).text == text


def test_a_snapshot_saw_what_had_committed_when_it_was_taken() -> None:
    snapshot = Snapshot.parse("100:105:101,103")
    seen = {xid: snapshot.saw(xid) for xid in (None, 99, 100, 101, 102, 103, 104, 105, 200)}
    assert seen == {
        None: True,  # a row written before xids were kept
        99: True,
        100: True,
        101: False,  # still running then
        102: True,
        103: False,
        104: True,
        105: False,  # not yet begun
        200: False,
    }


async def test_a_text_too_long_for_a_notification_reaches_the_dashboard_whole(api: Api) -> None:
    user = new_user()
    message = "é" * 20_000  # far over what a notification carries, escaped or not
    async with connected(api.url, token(user)) as ws:
        await start_account(ws)
        await next_change(ws, within=WAIT)
        project = (await api.generate(user))["data"]["generateStory"]
        answer = await api.report(projectId=project["id"], status="FAILED", errorMessage=message)
        assert "errors" not in answer, {**answer, "data": "..."}
        changes = await until(ws, lambda seen: any(c.get("status") == "FAILED" for c in seen))
    [failed] = [c for c in changes if c.get("status") == "FAILED"]
    assert failed["errorMessage"] == message
    check_order(changes)
