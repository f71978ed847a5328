"""Hostile requests get a clean, fast refusal, and the server goes on serving."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from graphql import get_introspection_query
from websockets.asyncio.client import ClientConnection

from tests.support import Api, bearer, new_user, storyline, token
from tests.support.databases import migrated_database
from tests.support.fakes import FakeVideoService
from tests.support.watch import connected, next_message, start, start_account

ME = "{ me { balance } }"


async def still_serving(api: Api) -> None:
    assert (await api.data(ME, auth=token(new_user()))) == {"me": {"balance": 100}}


DEPTH = 40
# A document over each limit, and a word the refusal's message must contain.
OVER_A_LIMIT = {
    "two thousand aliases": (
        "{ " + " ".join(f"a{n}: price" for n in range(2000)) + " }",
        "token",
    ),
    "more aliases than allowed": (
        "{ " + " ".join(f"a{n}: price" for n in range(31)) + " }",
        "aliases",
    ),
    "deeply nested": (
        "{ me { ledger { edges { node { " + "a { " * DEPTH + "b" + " }" * DEPTH + " } } } } }",
        "depth",
    ),
    "fragment cycle": (
        """
        query { me { ...A } }
        fragment A on Account { balance ...B }
        fragment B on Account { userId ...A }
        """,
        "cannot spread fragment",
    ),
}


@pytest.mark.parametrize("case", OVER_A_LIMIT)
async def test_a_document_over_a_limit_is_refused(api: Api, case: str) -> None:
    query, reason = OVER_A_LIMIT[case]
    body = await api.post(query, auth=token(new_user()))
    assert body.get("data") is None
    assert reason in body["errors"][0]["message"].lower()
    await still_serving(api)


async def test_graphiqls_introspection_query_still_works(api: Api) -> None:
    body = await api.post(get_introspection_query(descriptions=True), auth=None)
    assert "errors" not in body
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_a_five_megabyte_body_is_refused_with_413(api: Api) -> None:
    huge = json.dumps({"query": ME, "variables": {"pad": "x" * 5_000_000}})
    response = await api.http.post(
        "/graphql",
        content=huge,
        headers={"Content-Type": "application/json", "Authorization": bearer("u")},
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the server must count
        for _ in range(50):
            yield b"x" * 100_000

    streamed = await api.http.post(
        "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    await still_serving(api)


async def test_a_hundred_kilobyte_prompt_is_bad_input(api: Api) -> None:
    body = await api.generate(new_user(), prompt="p" * 100_000)
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "prompt"}
    await still_serving(api)


async def test_two_hundred_subscriptions_on_one_connection_are_capped(api: Api) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    limit = api.services.settings.max_subscriptions_per_connection
    async with connected(api.url, token(user)) as ws:
        for n in range(200):
            # Both live fields count against the one cap.
            if n % 2:
                await start_account(ws, op=str(n))
            else:
                await start(ws, project["id"], op=str(n))
        seen: dict[str, str] = {}
        while len(seen) < 200:
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            seen.setdefault(message["id"], message["type"])
    assert sum(kind == "next" for kind in seen.values()) == limit
    assert sum(kind == "error" for kind in seen.values()) == 200 - limit
    await still_serving(api)


async def test_subscriptions_per_user_are_capped_across_connections_and_fields(
    server_url: str, fake_upstream: tuple[FakeVideoService, str]
) -> None:
    database_url = await migrated_database(server_url)
    async with storyline(
        database_url, upstream_url=fake_upstream[1], max_subscriptions_per_user=3
    ) as api:
        user = new_user()
        project_id = (await api.generate(user))["data"]["generateStory"]["id"]
        async with connected(api.url, token(user)) as first:
            async with connected(api.url, token(user)) as second:
                # projectStatus and accountChanges count against the one cap.
                await start(first, project_id, op="a")
                assert (await next_of(first, "a"))["type"] == "next"
                await start_account(first, op="b")
                assert (await next_of(first, "b"))["type"] == "next"
                await start(second, project_id, op="c")
                assert (await next_of(second, "c"))["type"] == "next"
                await start_account(second, op="d")
                refused = await next_of(second, "d")
                error = refused["payload"]["errors"][0]
                assert error["extensions"]["code"] == "BAD_USER_INPUT", refused
                assert error["message"] == "At most 3 live subscriptions per user; close one first."
                assert (await next_of(second, "d"))["type"] == "complete"
                other = new_user()  # the cap is per user
                other_project = (await api.generate(other))["data"]["generateStory"]["id"]
                async with connected(api.url, token(other)) as third:
                    await start(third, other_project, op="e")
                    assert (await next_message(third, 5))["type"] == "next"
            # Closing a connection frees its slots.
            await start(first, project_id, op="f")
            assert (await next_of(first, "f"))["type"] == "next"


async def next_of(ws: ClientConnection, op: str) -> dict[str, Any]:
    """The next message of operation ``op``, passing over those of others (an account's
    later changes, say)."""
    while True:
        message = await next_message(ws, 5)
        if message.get("id") == op:
            return message


@pytest.mark.parametrize("setting", ["introspection", "graphiql"])
async def test_introspection_and_graphiql_can_be_switched_off(
    server_url: str, setting: str
) -> None:
    database_url = await migrated_database(server_url)
    async with storyline(
        database_url, upstream_url="http://127.0.0.1:9", **{setting: False}
    ) as api:
        introspection = await api.post("{ __schema { queryType { name } } }", auth=None)
        page = await api.http.get("/graphql", headers={"Accept": "text/html"})
        if setting == "introspection":
            assert introspection.get("data") is None
            assert page.status_code == 200
        else:
            assert "errors" not in introspection
            assert page.status_code != 200 or "graphiql" not in page.text.lower()
        await still_serving(api)


async def test_cors_is_closed_by_default_and_opens_to_configured_origins(
    api: Api, server_url: str
) -> None:
    preflight = {
        "Origin": "https://editor.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    closed = await api.http.options("/graphql", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers

    database_url = await migrated_database(server_url)
    async with storyline(
        database_url, upstream_url="http://127.0.0.1:9", cors_origins="https://editor.example"
    ) as open_api:
        allowed = await open_api.http.options("/graphql", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://editor.example"
        foreign = await open_api.http.options(
            "/graphql", headers=preflight | {"Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in foreign.headers
