"""Reads: me and its ledger, projects with filter and cursors, price."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from storyline.auth import Role
from tests.support import Api, books, new_user, token

EXAMPLES = int(os.environ.get("STORYLINE_HYPOTHESIS_EXAMPLES", "50"))
PROJECTS = """
query($status: ProjectStatus, $first: Int!, $after: String) {
  projects(status: $status, first: $first, after: $after) {
    edges { cursor node { id status } } pageInfo { hasNextPage endCursor }
  }
}
"""
LEDGER = """
query($first: Int!, $after: String) {
  me { userId balance ledger(first: $first, after: $after) {
    edges { cursor node { kind amount balanceAfter projectId reason } }
    pageInfo { hasNextPage endCursor }
  } }
}
"""


async def test_me_creates_the_account_with_its_signup_grant_once(
    api: Api, engine: AsyncEngine
) -> None:
    user = new_user()
    for _ in range(2):
        me = (await api.data(LEDGER, {"first": 20}, auth=token(user)))["me"]
    assert (me["userId"], me["balance"]) == (user, 100)
    [entry] = me["ledger"]["edges"]
    assert entry["node"] == {
        "kind": "GRANT",
        "amount": 100,
        "balanceAfter": 100,
        "projectId": None,
        "reason": "sign-up credits",
    }
    assert len((await books(engine, user)).ledger) == 1


async def test_ledger_pages_newest_first(api: Api) -> None:
    user = new_user()
    for n in range(2):
        await api.generate(user, quality="SD", prompt=f"Story {n}")
    first = (await api.data(LEDGER, {"first": 2}, auth=token(user)))["me"]["ledger"]
    assert [(e["node"]["kind"], e["node"]["balanceAfter"]) for e in first["edges"]] == [
        ("CHARGE", 20),
        ("CHARGE", 60),
    ]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await api.data(
        LEDGER, {"first": 2, "after": first["pageInfo"]["endCursor"]}, auth=token(user)
    )
    later = rest["me"]["ledger"]
    assert [(e["node"]["kind"], e["node"]["balanceAfter"]) for e in later["edges"]] == [
        ("GRANT", 100)
    ]
    assert later["pageInfo"] == {"hasNextPage": False, "endCursor": later["edges"][-1]["cursor"]}


async def test_projects_newest_first_with_cursors_and_status_filter(api: Api) -> None:
    user = new_user()
    await api.grant(user, 500)
    made = [
        (await api.generate(user, quality="SD", prompt=f"Story {n}"))["data"]["generateStory"]["id"]
        for n in range(5)
    ]
    await api.report(projectId=made[1], status="COMPLETED")
    await api.report(projectId=made[3], status="FAILED")

    seen: list[str] = []
    after = None
    while True:
        page = (await api.data(PROJECTS, {"first": 2, "after": after}, auth=token(user)))[
            "projects"
        ]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == made[::-1]

    for status, expected in (
        ("COMPLETED", [made[1]]),
        ("FAILED", [made[3]]),
        ("PROCESSING", [made[4], made[2], made[0]]),
        ("PENDING", []),
    ):
        page = await api.data(PROJECTS, {"status": status, "first": 10}, auth=token(user))
        assert [e["node"]["id"] for e in page["projects"]["edges"]] == expected, status


async def test_an_empty_list_has_no_cursor(api: Api) -> None:
    page = (await api.data(PROJECTS, {"first": 5}, auth=token(new_user())))["projects"]
    assert page == {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}


@pytest.mark.parametrize("first", [0, 101, -5])
async def test_first_outside_1_to_100_is_bad_input(api: Api, first: int) -> None:
    for query in (PROJECTS, LEDGER):
        error = await api.error(query, {"first": first}, auth=token(new_user()))
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}
        assert "first" in error["message"]


@pytest.mark.parametrize("cursor", ["garbage", "bDo1", "cDp4fHk", ""])
async def test_a_foreign_cursor_is_bad_input(api: Api, cursor: str) -> None:
    body = await api.post(PROJECTS, {"first": 5, "after": cursor}, auth=token(new_user()))
    if cursor == "":
        assert "errors" not in body  # an empty cursor is the start of the list
    else:
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def cursor(text: str) -> str:
    """A cursor as this API spells them (its encoding is not part of the contract)."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


SOME_ID = "8a7e4f5c-2c1f-4b1e-9d3a-6f0e2b9c1d4a"


@pytest.mark.parametrize(
    ("query", "after"),
    [
        # A digit to str.isdigit but not to int(); a digit to int() but not one we write.
        pytest.param(LEDGER, cursor("l:\N{SUPERSCRIPT TWO}"), id="ledger-superscript"),
        pytest.param(LEDGER, cursor("l:\N{ARABIC-INDIC DIGIT ONE}"), id="ledger-arabic-indic"),
        pytest.param(LEDGER, cursor("l:9223372036854775808"), id="ledger-past-bigint"),
        # Instants past year 9999 or before year 1 once in UTC; one without an offset.
        pytest.param(
            PROJECTS, cursor(f"p:9999-12-31T23:59:59.999999-23:59|{SOME_ID}"), id="year-10000"
        ),
        pytest.param(PROJECTS, cursor(f"p:0001-01-01T00:00:00+23:59|{SOME_ID}"), id="year-0"),
        pytest.param(PROJECTS, cursor(f"p:2024-01-01T00:00:00|{SOME_ID}"), id="no-offset"),
    ],
)
async def test_a_malformed_cursor_is_bad_input_and_logs_nothing(
    api: Api, caplog: pytest.LogCaptureFixture, query: str, after: str
) -> None:
    with caplog.at_level(logging.WARNING):
        error = await api.error(query, {"first": 5, "after": after}, auth=token(new_user()))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}
    assert "cursor" in error["message"]
    assert not [record for record in caplog.records if record.exc_info], caplog.text


async def test_a_cursor_at_the_ends_of_time_in_utc_is_a_position(api: Api) -> None:
    # The timestamps a projects cursor can hold: any instant of years 1 to 9999.
    for instant in ("9999-12-31T23:59:59.999999+00:00", "0001-01-01T00:00:00-23:59"):
        after = cursor(f"p:{instant}|{SOME_ID}")
        data = await api.data(PROJECTS, {"first": 5, "after": after}, auth=token(new_user()))
        assert data["projects"]["edges"] == []


OFFSETS = st.timedeltas(timedelta(hours=-23, minutes=-59), timedelta(hours=23, minutes=59))
MOMENTS = st.builds(
    datetime.replace,
    st.sampled_from([datetime.min, datetime.max]) | st.datetimes(),
    tzinfo=st.none() | st.builds(timezone, OFFSETS),
)
DIGITS = st.text(st.characters(categories=["Nd", "No"]), min_size=1)  # in any script
CURSORS = st.one_of(
    st.text(),
    st.builds(cursor, st.text()),
    st.builds(cursor, st.builds("l:{}".format, DIGITS | st.integers() | st.text())),
    st.builds(
        cursor,
        st.builds(
            "p:{}|{}".format,
            st.builds(datetime.isoformat, MOMENTS) | st.text(),
            st.uuids() | st.text(),
        ),
    ),
)


async def test_every_string_is_a_cursor_or_bad_input(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    auth = token(new_user())

    @given(query=st.sampled_from([LEDGER, PROJECTS]), after=CURSORS)
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def check(query: str, after: str) -> None:
        request = api.post(query, {"first": 1, "after": after}, auth=auth)
        body = asyncio.run_coroutine_threadsafe(request, loop).result(timeout=30)
        for error in body.get("errors", []):
            assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}, body

    # hypothesis drives from a thread of its own so that this loop stays free to serve.
    with caplog.at_level(logging.WARNING):
        await asyncio.to_thread(check)
    assert not [record for record in caplog.records if record.exc_info], caplog.text


async def test_price_follows_the_quality_and_defaults_to_hd(api: Api) -> None:
    data = await api.data(
        "{ default: price sd: price(quality: SD) hd: price(quality: HD)"
        " f: price(quality: FULL_HD) }",
        auth=token(new_user()),
    )
    assert data == {"default": 60, "sd": 40, "hd": 60, "f": 80}


async def test_a_malformed_project_id_is_simply_absent(api: Api) -> None:
    data = await api.data('{ project(id: "not-a-uuid") { id } }', auth=token(new_user()))
    assert data == {"project": None}


async def test_admins_grant_credits_to_new_and_existing_accounts(
    api: Api, engine: AsyncEngine
) -> None:
    user = new_user()
    granted = await api.data(
        "mutation($u: ID!) "
        '{ grantCredits(userId: $u, amount: 250, reason: " promo ") { userId balance } }',
        {"u": user},
        auth=token("admin", Role.ADMIN),
    )
    assert granted["grantCredits"] == {"userId": user, "balance": 350}
    state = await books(engine, user)
    assert state.ledger == [("GRANT", 100, None), ("GRANT", 250, None)]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -50}, "amount"),
        ({"amount": 2**31 - 1}, "amount"),
        ({"reason": "  "}, "reason"),
        ({"userId": ""}, "userId"),
    ],
)
async def test_bad_grants_change_nothing(
    api: Api, engine: AsyncEngine, args: dict[str, object], field: str
) -> None:
    user = new_user()
    await api.data("{ me { balance } }", auth=token(user))
    before = await books(engine, user)
    variables = {"u": user, "amount": 10, "reason": "r", **args}
    if "userId" in args:
        variables["u"] = args["userId"]
    error = await api.error(
        "mutation($u: ID!, $amount: Int!, $reason: String!) "
        "{ grantCredits(userId: $u, amount: $amount, reason: $reason) { balance } }",
        variables,
        auth=token("admin", Role.ADMIN),
    )
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}
    assert await books(engine, user) == before


async def test_grants_leave_room_for_every_refund_still_possible(
    api: Api, engine: AsyncEngine
) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]  # 60 held, 40 left
    room = 2**31 - 1 - 40 - 60
    error = await api.error(
        'mutation($u: ID!, $a: Int!) { grantCredits(userId: $u, amount: $a, reason: "r") '
        "{ balance } }",
        {"u": user, "a": room + 1},
        auth=token("admin", Role.ADMIN),
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    await api.grant(user, room)
    failed = await api.report(projectId=project["id"], status="FAILED", errorMessage="x")
    assert "errors" not in failed, failed
    assert (await books(engine, user)).balance == 2**31 - 1
