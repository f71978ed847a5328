"""Tokens, the JWT secret and the upstream token never reach logs or error messages."""

from __future__ import annotations

import logging

import jwt
import pytest

from tests.support import JWT_SECRET, Api, new_user, token

UPSTREAM_TOKEN = "upstream-secret-token"  # what the `api` fixture sends to the video service


async def test_no_secret_is_logged_or_answered(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    expired = token(new_user(), ttl=-30)
    forged = jwt.encode({"sub": "mallory", "role": "admin"}, "f" * 40, algorithm="HS256")
    valid = token(new_user())
    answers: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for bearer in (expired, forged, "Bearer-less " + valid):
            response = await api.request("{ me { balance } }", auth=bearer)
            answers.append(response.text)
        failed = await api.generate(new_user(), prompt="Refused [500]")
        assert failed["errors"][0]["extensions"]["code"] == "UPSTREAM_FAILED"
        answers.append(str(failed))
        crashed = await api.generate(new_user(), prompt="Garbage [malformed]")
        answers.append(str(crashed))

    logged = caplog.text
    assert "video service answered HTTP 500" in logged  # the logs did capture the failure
    for secret in (expired, forged, valid, JWT_SECRET, UPSTREAM_TOKEN):
        assert secret not in logged
        for answer in answers:
            assert secret not in answer
