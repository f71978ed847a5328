"""Bearer tokens and roles, as the HTTP API applies them."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from storyline.auth import Role
from tests.support import JWT_SECRET, Api, books, new_user, row_counts, token

ME = "{ me { balance } }"


def unsigned(claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


BAD_HEADERS = {
    "missing": None,
    "not a bearer": "Basic dXNlcjpwYXNz",
    "empty bearer": "Bearer",
    "malformed": "Bearer not.a.jwt",
    "wrong secret": "Bearer " + jwt.encode({"sub": "mallory"}, "y" * 40, algorithm="HS256"),
    "alg none": "Bearer " + unsigned({"sub": "mallory", "role": "admin"}),
    "other algorithm": "Bearer " + jwt.encode({"sub": "mallory"}, JWT_SECRET, algorithm="HS384"),
    "expired": "Bearer " + token("mallory", ttl=-10),
    "no subject": "Bearer " + jwt.encode({"role": "user"}, JWT_SECRET, algorithm="HS256"),
    "unknown role": "Bearer " + jwt.encode({"sub": "m", "role": "root"}, JWT_SECRET, "HS256"),
}
# PyJWT reads these claims with int(): a numeric string or a boolean passes its checks.
HOUR_AHEAD = int(time.time()) + 3600
NOT_NUMERIC_DATES = [
    ("exp", str(HOUR_AHEAD)),
    ("nbf", "0"),
    ("iat", str(int(time.time()))),
    ("exp", True),
    ("nbf", False),
    ("iat", True),
]
for claim, value in NOT_NUMERIC_DATES:
    BAD_HEADERS[f"{type(value).__name__} {claim}"] = "Bearer " + jwt.encode(
        {"sub": "mallory", "exp": HOUR_AHEAD, claim: value}, JWT_SECRET, "HS256"
    )


@pytest.mark.parametrize("header", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
async def test_a_bad_token_is_unauthenticated_everywhere(
    api: Api, engine: AsyncEngine, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    before = await row_counts(engine)
    for query in (
        ME,
        "{ price }",
        "{ projects { edges { cursor } } }",
        'mutation { generateStory(input: {prompt: "x"}) { id } }',
        'mutation { updateStatus(input: {externalId: "e", status: FAILED}) { id } }',
        'mutation { grantCredits(userId: "u", amount: 5, reason: "r") { balance } }',
    ):
        response = await api.request(query, auth=None, headers=headers)
        body = response.json()
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", (query, body)
        assert body["data"] is None
    assert await row_counts(engine) == before


async def test_expiry_is_enforced_only_when_present(api: Api) -> None:
    assert "errors" not in await api.post(ME, auth=token(new_user(), ttl=60))
    assert "errors" not in await api.post(ME, auth=token(new_user()))
    body = await api.post(ME, auth=token(new_user(), ttl=-1))
    assert body["errors"][0]["message"] == "The token has expired."


async def test_a_token_verified_earlier_is_refused_once_it_expires(api: Api) -> None:
    # A NumericDate may be fractional: this one expires within the test.
    expires = time.time() + 1.2
    user_token = jwt.encode({"sub": new_user(), "exp": expires}, JWT_SECRET, "HS256")
    assert "errors" not in await api.post(ME, auth=user_token)
    await asyncio.sleep(expires - time.time() + 0.05)
    body = await api.post(ME, auth=user_token)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body
    assert body["errors"][0]["message"] == "The token has expired."


async def test_introspection_needs_no_token(api: Api) -> None:
    body = await api.post("{ __schema { queryType { name } } }", auth=None)
    assert body == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


async def test_a_user_may_not_report_status_or_grant_credits(api: Api, engine: AsyncEngine) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    before = await books(engine, user)
    for role in (Role.USER, Role.PIPELINE):
        grant = await api.post(
            'mutation($u: ID!) { grantCredits(userId: $u, amount: 9, reason: "x") { balance } }',
            {"u": user},
            auth=token(user, role) if role is Role.USER else token("pipeline", role),
        )
        assert grant["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    report = await api.post(
        "mutation($id: ID!) { updateStatus(input: {projectId: $id, status: FAILED}) { id } }",
        {"id": project["id"]},
        auth=token(user),
    )
    assert report["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await books(engine, user) == before


async def test_forbidden_comes_before_input_checks(api: Api) -> None:
    body = await api.post(
        "mutation { updateStatus(input: {status: FAILED, progress: 500}) { id } }",
        auth=token(new_user()),
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_another_users_project_is_invisible(api: Api) -> None:
    owner, other = new_user(), new_user()
    project = (await api.generate(owner))["data"]["generateStory"]
    query = "query($id: ID!) { project(id: $id) { id } projects { edges { node { id } } } }"
    seen = await api.data(query, {"id": project["id"]}, auth=token(other))
    assert seen == {"project": None, "projects": {"edges": []}}
    mine = await api.data(query, {"id": project["id"]}, auth=token(owner))
    assert mine["project"] == {"id": project["id"]}
    for role in (Role.PIPELINE, Role.ADMIN):
        staff = await api.data(query, {"id": project["id"]}, auth=token("staff", role))
        assert staff["project"] == {"id": project["id"]}


def test_tokens_expire_on_time() -> None:
    claims = jwt.decode(token("u", ttl=30), JWT_SECRET, algorithms=["HS256"])
    assert abs(claims["exp"] - (time.time() + 30)) < 5
