"""Settings refuse what would be unsafe to run with, and say how to do better."""

from __future__ import annotations

import secrets

import pytest
from pydantic import ValidationError

from storyline.config import Settings
from tests.support import JWT_SECRET

WEAK_SECRETS = {
    "spaces": " " * 34,
    "one character": "x" * 64,
    "whitespace mix": " \t\n" * 12,
    "two characters": "ab" * 20,
    "a repeated word": "password" * 5,
    "a repeated hex block": "0123456789abcdef" * 4,
    "mostly one character": "test-secret-" + "x" * 40,
    "a short hex token": "c9b322303b2fae8123a4d0af5ae797e8",
}
STRONG_SECRETS = {
    "token_urlsafe(48)": secrets.token_urlsafe(48),
    "token_urlsafe(32)": secrets.token_urlsafe(32),
    "token_hex(32)": secrets.token_hex(32),
    "the suite's secret": JWT_SECRET,
}


@pytest.mark.parametrize("secret", WEAK_SECRETS.values(), ids=WEAK_SECRETS.keys())
def test_a_guessable_jwt_secret_is_refused_with_how_to_make_one(secret: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings.model_validate({"jwt_secret": secret})
    [error] = refused.value.errors(include_input=False)
    assert error["loc"] == ("jwt_secret",)
    assert "secrets.token_urlsafe(48)" in error["msg"], error


@pytest.mark.parametrize("secret", STRONG_SECRETS.values(), ids=STRONG_SECRETS.keys())
def test_a_random_jwt_secret_is_accepted(secret: str) -> None:
    settings = Settings.model_validate({"jwt_secret": secret})
    assert settings.resolved_jwt_secret() == secret
