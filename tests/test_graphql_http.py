"""GraphQL over HTTP: graphql-response+json with the specification's status codes, and the
classic application/json behaviour for clients that ask for it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from storyline.graphql_http import GRAPHQL_RESPONSE_JSON, JSON, negotiate
from tests.support import Api, bearer, new_user, token
from tests.support.logs import errors_logged

SPEC = f"{GRAPHQL_RESPONSE_JSON}, {JSON};q=0.9"

CASES: dict[str, tuple[dict[str, Any], int, bool]] = {
    # name: (request body, status under graphql-response+json, has a data entry)
    "success": ({"query": "{ price }"}, 200, True),
    "field error": (
        {"query": '{ project(id: "x") { id } me { balance } price(quality: SD) }'},
        200,
        True,
    ),
    "parse error": ({"query": "{ price "}, 400, False),
    "validation error": ({"query": "{ nope }"}, 400, False),
    "variable coercion": (
        {
            "query": "query($f: Int!) { projects(first: $f) { pageInfo { hasNextPage } } }",
            "variables": {"f": "many"},
        },
        400,
        False,
    ),
    "expected error": ({"query": "{ projects(first: 0) { edges { cursor } } }"}, 200, True),
}


async def post(api: Api, body: dict[str, Any], accept: str | None) -> httpx.Response:
    headers = {} if accept is None else {"Accept": accept}
    return await api.request(
        body["query"],
        body.get("variables"),
        operation_name=body.get("operationName"),
        auth=token(new_user()),
        headers=headers,
    )


@pytest.mark.parametrize("case", CASES)
async def test_graphql_response_json_answers_with_the_specs_status_codes(
    api: Api, case: str
) -> None:
    body, status, has_data = CASES[case]
    response = await post(api, body, SPEC)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE_JSON)
    assert ("data" in response.json()) is has_data
    if not has_data:
        assert response.json()["errors"]


@pytest.mark.parametrize("accept", [JSON, None, "*/*"])
@pytest.mark.parametrize("case", CASES)
async def test_classic_json_keeps_200(api: Api, case: str, accept: str | None) -> None:
    body, _, has_data = CASES[case]
    response = await post(api, body, accept)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(JSON)
    assert ("data" in response.json()) is has_data


async def test_get_runs_queries_but_not_mutations(api: Api) -> None:
    headers = {"Authorization": bearer(new_user()), "Accept": SPEC}
    query = await api.http.get("/graphql", params={"query": "{ price }"}, headers=headers)
    assert (query.status_code, query.json()) == (200, {"data": {"price": 60}})
    mutation = await api.http.get(
        "/graphql",
        params={"query": 'mutation { generateStory(input: {prompt: "x"}) { id } }'},
        headers=headers,
    )
    assert mutation.status_code == 405
    assert mutation.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"query": "{ price }", "variables": {"v": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
        b'{"query": "{ price }", "variables": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001,
    ],
    ids=["malformed", "nested arrays", "nested objects"],
)
async def test_a_body_that_is_not_json_we_can_read_is_bad_input(api: Api, body: bytes) -> None:
    headers = {"Authorization": bearer(new_user()), "Content-Type": "application/json"}
    with errors_logged() as errors:
        response = await api.http.post("/graphql", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(JSON)
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "JSON" in error["message"]
    assert not errors
    assert (await api.data("{ price }", auth=token(new_user()))) == {"price": 60}


SUBSCRIPTION = 'subscription { projectStatus(projectId: "p") { status } }'


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("authorized", [True, False])
async def test_a_subscription_over_http_is_told_to_use_the_websocket(
    api: Api, method: str, authorized: bool
) -> None:
    headers = {"Authorization": bearer(new_user())} if authorized else {}
    with errors_logged() as errors:
        if method == "GET":
            response = await api.http.get(
                "/graphql", params={"query": SUBSCRIPTION}, headers=headers
            )
        else:
            response = await api.request(SUBSCRIPTION, auth=None, headers=headers)
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "WebSocket" in error["message"]
    assert "/graphql" in error["message"]
    assert not errors


TWO_OPERATIONS = "query Price { price } query Balance { me { balance } }"


@pytest.mark.parametrize("accept", [SPEC, JSON])
async def test_two_operations_without_an_operation_name_are_a_request_error(
    api: Api, accept: str
) -> None:
    response = await post(api, {"query": TWO_OPERATIONS}, accept)
    assert response.status_code == (400 if accept == SPEC else 200), response.text
    body = response.json()
    assert "data" not in body
    [error] = body["errors"]
    assert error["message"] == "Must provide operation name if query contains multiple operations."
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_the_named_operation_of_several_runs(api: Api) -> None:
    for name, data in (("Price", {"price": 60}), ("Balance", {"me": {"balance": 100}})):
        response = await post(api, {"query": TWO_OPERATIONS, "operationName": name}, SPEC)
        assert response.json() == {"data": data}
    unknown = await post(api, {"query": TWO_OPERATIONS, "operationName": "Nope"}, SPEC)
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        (JSON, JSON),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        (SPEC, GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0.5, {JSON}", JSON),
        (f"{JSON}, {GRAPHQL_RESPONSE_JSON}", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0, {JSON};q=0.1", JSON),
    ],
)
def test_negotiation(accept: str | None, chosen: str) -> None:
    assert negotiate(accept) == chosen
