"""Bearer tokens and roles, as the HTTP API applies them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from storyline.auth import Role, _plain_hs256, authenticate, issue_token
from storyline.domain.errors import Unauthenticated
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


# Claims as issuers write them, and as they should not: each date now and then not an int,
# in the past or the future (never within a minute of now, where the two clocks could
# disagree), claims PyJWT checks (aud, jti, iss) or does not know.
NOW = int(time.time())
dates = (
    st.integers(min_value=60, max_value=10**8).map(lambda ahead: NOW + ahead)
    | st.integers(min_value=60, max_value=10**8).map(lambda ago: NOW - ago)
    | st.sampled_from([True, "1700000000", 1.5e9, None, 2**70])
)
claim_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.lists(st.text(max_size=4), max_size=2)
)
PLAIN = {
    "role": st.sampled_from(["user", "admin", "pipeline", "root"]),
    "iat": dates,
    "exp": dates,
    "nbf": dates,
}
# Mostly the plain kind's claims and headers, which the two must agree on in detail; now
# and then the others, which must be left to PyJWT.
subjects = st.text(min_size=1, max_size=12)
claims_strategy = st.fixed_dictionaries({"sub": subjects}, optional=PLAIN) | st.fixed_dictionaries(
    {},
    optional={
        **PLAIN,
        "sub": subjects | claim_values,
        "aud": claim_values,
        "jti": claim_values,
        "iss": claim_values,
        "extra": claim_values,
    },
)
headers_strategy = st.sampled_from([{}, {"typ": "JWT"}]) | st.fixed_dictionaries(
    {},
    optional={
        "typ": st.sampled_from(["JWT", "jwt", "at+jwt"]),
        "kid": st.text(max_size=4) | st.integers(),
        "crit": st.just(["b64"]),
        "b64": st.booleans(),
    },
)


def signed(header: dict[str, object], claims: dict[str, object], secret: str) -> str:
    def part(value: bytes) -> bytes:
        return base64.urlsafe_b64encode(value).rstrip(b"=")

    body = part(json.dumps(header).encode()) + b"." + part(json.dumps(claims).encode())
    mac = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return (body + b"." + part(mac)).decode()


def mutated(token: str, how: str, at: int) -> str:
    at %= len(token)
    if how == "replace":
        return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]
    if how == "insert":
        return token[:at] + "!" + token[at:]
    if how == "pad":
        head, _, signature = token.rpartition(".")
        return f"{head}.{signature}="
    if how == "drop":
        return token[:at] + token[at + 1 :]
    return token


@settings(max_examples=2000, deadline=None)
@given(
    claims=claims_strategy,
    headers=headers_strategy,
    algorithm=st.sampled_from(["HS256"] * 4 + ["HS384", "none"]),
    secret=st.sampled_from([JWT_SECRET] * 3 + [JWT_SECRET[::-1]]),
    how=st.sampled_from(["none"] * 4 + ["replace", "insert", "pad", "drop"]),
    at=st.integers(min_value=0),
)
# Each a token the plain kind would take but for one thing, which PyJWT refuses.
@example({"sub": "a", "exp": NOW - 3600}, {}, "HS256", JWT_SECRET, "none", 0)
@example({"sub": "a", "nbf": NOW + 3600}, {}, "HS256", JWT_SECRET, "none", 0)
@example({"sub": "a", "iat": NOW + 3600}, {}, "HS256", JWT_SECRET, "none", 0)
@example({"sub": "a", "iat": "1700000000"}, {}, "HS256", JWT_SECRET, "none", 0)
@example({"sub": 7}, {}, "HS256", JWT_SECRET, "none", 0)
@example({"sub": "a", "aud": "x"}, {}, "HS256", JWT_SECRET, "none", 0)
@example({"sub": "a"}, {"kid": 7}, "HS256", JWT_SECRET, "none", 0)
@example({"sub": "a"}, {"crit": ["b64"]}, "HS256", JWT_SECRET, "none", 0)
@example({"sub": "a"}, {}, "HS256", JWT_SECRET[::-1], "none", 0)
@example({"sub": "a"}, {}, "HS256", JWT_SECRET, "pad", 0)
def test_a_token_read_without_pyjwt_is_one_pyjwt_accepts_with_the_same_claims(
    claims: dict[str, object],
    headers: dict[str, object],
    algorithm: str,
    secret: str,
    how: str,
    at: int,
) -> None:
    if algorithm == "HS256":
        # Signed by hand: headers PyJWT would not write (a kid that is no string, crit).
        made = signed({"alg": "HS256", **headers}, claims, secret)
    else:
        try:
            made = jwt.encode(claims, secret if algorithm != "none" else None, algorithm=algorithm)  # type: ignore[arg-type]  # "none" takes no key
        except (TypeError, ValueError, jwt.PyJWTError):
            return  # claims PyJWT will not write
    candidate = mutated(made, how, at)

    fast = _plain_hs256(JWT_SECRET, candidate)

    try:
        expected = jwt.decode(
            candidate, JWT_SECRET, algorithms=["HS256"], options={"require": ["sub"]}
        )
    except jwt.PyJWTError:
        expected = None
    if fast is not None:
        assert fast == expected
    plain = (
        algorithm == "HS256"
        and secret == JWT_SECRET
        and how == "none"
        and headers.keys() <= {"typ"}
        and headers.get("typ", "JWT") == "JWT"
        and claims.keys() <= {"sub", "role", "iat", "exp", "nbf"}
    )
    if (
        plain
        and expected is not None
        and all(type(claims[name]) is int for name in ("iat", "exp", "nbf") if name in claims)
    ):
        assert fast == expected  # the plain kind is read without PyJWT, not left to it


def test_tokens_storyline_issues_are_read_without_pyjwt() -> None:
    for role in Role:
        for ttl in (None, 3600.0):
            issued = issue_token(JWT_SECRET, "someone", role=role, ttl=ttl)
            claims = _plain_hs256(JWT_SECRET, issued)
            assert claims is not None
            assert claims == jwt.decode(issued, JWT_SECRET, algorithms=["HS256"])


def test_a_token_no_encoding_can_carry_is_unauthenticated() -> None:
    # A connection_init payload is JSON, which can spell a lone surrogate.
    with pytest.raises(Unauthenticated, match="not valid"):
        authenticate(JWT_SECRET, "Bearer e30\udc80.e30.e30")
