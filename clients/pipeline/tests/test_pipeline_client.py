"""The pipeline client on its own: what an answer means, its configuration, its contract.

Nothing here needs a running Storyline, nor the server's package: the flow runs against a
real Storyline are the server's tests (tests/test_prefect.py), and the install from a
clone is tests/test_pipeline_install.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from graphql import build_schema, parse, validate
from graphql.type import GraphQLEnumType

import storyline_pipeline
from storyline_pipeline.prefect import (
    TOKEN_ENV,
    URL_ENV,
    Endpoint,
    ReportingHooks,
    ReportRejected,
    StatusName,
    StorylineNotConfigured,
    StorylineUnavailable,
    backoff,
    interpret,
    report_status,
)
from storyline_pipeline.reports import REPORT

# The repository's copy of the public contract (tests/test_contract.py keeps it current).
CONTRACT = Path(__file__).resolve().parents[3] / "tests" / "contract" / "schema.graphql"


def answer(status: int, body: object) -> httpx.Response:
    if isinstance(body, str):
        return httpx.Response(status, text=body)
    return httpx.Response(status, json=body)


def graphql_error(code: str) -> dict[str, Any]:
    return {"data": None, "errors": [{"message": "no", "extensions": {"code": code}}]}


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (answer(503, "Service Unavailable"), StorylineUnavailable),
        (answer(502, "<html>bad gateway</html>"), StorylineUnavailable),
        (answer(429, {"detail": "slow down"}), StorylineUnavailable),
        (answer(200, "<html>a captive portal</html>"), StorylineUnavailable),
        (answer(200, graphql_error("INTERNAL_SERVER_ERROR")), StorylineUnavailable),
        (answer(200, graphql_error("INVALID_TRANSITION")), ReportRejected),
        (answer(409, graphql_error("INVALID_TRANSITION")), ReportRejected),
        (answer(200, graphql_error("FORBIDDEN")), ReportRejected),
        (answer(400, graphql_error("BAD_USER_INPUT")), ReportRejected),
        (answer(404, "Not Found"), ReportRejected),
    ],
)
def test_answers_are_retried_only_when_transient(
    response: httpx.Response, error: type[Exception]
) -> None:
    with pytest.raises(error):
        interpret(response)


def test_endpoint_from_environment_keeps_the_token_out_of_sight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(StorylineNotConfigured, match=f"{URL_ENV} and {TOKEN_ENV}"):
        Endpoint.resolve()
    monkeypatch.setenv(URL_ENV, "http://storyline.test/graphql")
    monkeypatch.setenv(TOKEN_ENV, "secret-token-value")
    endpoint = Endpoint.resolve()
    assert endpoint.url == "http://storyline.test/graphql"
    assert "secret-token-value" not in repr(endpoint)
    assert "secret-token-value" not in repr(ReportingHooks(token="secret-token-value"))


def test_backoff_doubles_up_to_the_cap() -> None:
    assert backoff(1.0, retries=8, cap=60) == [1, 2, 4, 8, 16, 32, 60, 60]
    assert report_status.retries == 8
    assert report_status.retry_jitter_factor


def test_the_report_is_valid_against_the_contract() -> None:
    contract = build_schema(CONTRACT.read_text())
    assert validate(contract, parse(REPORT)) == []
    statuses = contract.get_type("ProjectStatus")
    assert isinstance(statuses, GraphQLEnumType)
    assert set(get_args(StatusName)) == set(statuses.values)


def test_the_version_is_the_contracts() -> None:
    """The contract changed? Check the client against it (the test above), then move
    CONTRACT_SHA256 and CONTRACT_VERSION on, and the major version with them."""
    assert hashlib.sha256(CONTRACT.read_bytes()).hexdigest() == storyline_pipeline.CONTRACT_SHA256
    major, _release = storyline_pipeline.__version__.split(".")
    assert int(major) == storyline_pipeline.CONTRACT_VERSION
