from __future__ import annotations

from typing import Any

import pytest

from storyline.domain.errors import BadUserInput
from storyline.domain.lifecycle import Status
from storyline.domain.pricing import Quality
from storyline.domain.requests import AspectRatio, StatusReport, StoryRequest


def story(**overrides: Any) -> StoryRequest:
    fields: dict[str, Any] = {
        "prompt": "A cat",
        "quality": Quality.HD,
        "aspect_ratio": AspectRatio.LANDSCAPE_16_9,
        "image_model": "comfyui/flux",
        "seed": None,
        "idempotency_key": None,
        **overrides,
    }
    return StoryRequest.checked(**fields)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 4001}, "prompt"),
        ({"image_model": ""}, "imageModel"),
        ({"seed": -1}, "seed"),
        ({"idempotency_key": ""}, "idempotencyKey"),
        ({"idempotency_key": "k" * 256}, "idempotencyKey"),
    ],
)
def test_bad_story_input_names_its_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(BadUserInput) as raised:
        story(**overrides)
    assert raised.value.extensions["field"] == field
    assert field in raised.value.message


def test_prompt_is_trimmed_and_4000_characters_are_enough() -> None:
    assert story(prompt="  hi  ").prompt == "hi"
    assert len(story(prompt=" " + "x" * 4000 + " ").prompt) == 4000


def test_fingerprint_ignores_the_key_and_sees_every_input() -> None:
    base = story(idempotency_key="a")
    assert base.fingerprint() == story(idempotency_key="b").fingerprint()
    for change in (
        {"prompt": "A dog"},
        {"quality": Quality.SD},
        {"aspect_ratio": AspectRatio.SQUARE_1_1},
        {"image_model": "other"},
        {"seed": 1},
    ):
        assert story(**change).fingerprint() != base.fingerprint()


def test_fingerprint_is_stable_across_releases() -> None:
    """Rows keep the fingerprint their request had: a replay after an upgrade must match."""
    first = StoryRequest(
        "A lighthouse keeper adopts a seal",
        Quality.HD,
        AspectRatio.LANDSCAPE_16_9,
        "comfyui/flux",
        7,
        "k",
    )
    second = StoryRequest('Ünïcode "quotes"', Quality.SD, AspectRatio.SQUARE_1_1, "x", None, None)
    assert first.fingerprint() == (
        "4e0dba4083e4f95092fd8655b8bd8f8b2444d86b03d2c742e44d554b339a8506"
    )
    assert second.fingerprint() == (
        "3270bdc751e54165e9f03a8f9c07a3533ae2a699c3545cbb737db46da790609b"
    )


def report(**overrides: Any) -> StatusReport:
    fields: dict[str, Any] = {
        "project_id": "7f1c1b8e-25a3-4a55-9a8e-0f3f3a8f7c11",
        "external_id": None,
        "status": Status.PROCESSING,
        "progress": None,
        "stage": None,
        "error_message": None,
        "result_url": None,
        **overrides,
    }
    return StatusReport.checked(**fields)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"project_id": None}, "projectId"),
        ({"external_id": "ext-1"}, "projectId"),
        ({"project_id": "not-a-uuid"}, "projectId"),
        ({"progress": 101}, "progress"),
        ({"progress": -1}, "progress"),
        ({"stage": "s" * 201}, "stage"),
        ({"result_url": "ftp://host/video"}, "resultUrl"),
        ({"result_url": "javascript:alert(1)"}, "resultUrl"),
        ({"result_url": "https://" + "h" * 2048}, "resultUrl"),
        ({"error_message": "e" * 200_000}, "errorMessage"),
    ],
)
def test_bad_reports_name_their_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(BadUserInput) as raised:
        report(**overrides)
    assert raised.value.extensions["field"] == field


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"prompt": "a\x00b"}, "prompt"), ({"idempotency_key": "\x00"}, "idempotencyKey")],
)
def test_nul_characters_are_refused(overrides: dict[str, Any], field: str) -> None:
    # PostgreSQL cannot store NUL in text; found by the fuzzer as an internal error.
    with pytest.raises(BadUserInput) as raised:
        story(**overrides)
    assert raised.value.extensions["field"] == field


def test_lone_surrogates_are_refused() -> None:
    # JSON can carry "\ud800"; PostgreSQL cannot store it (found in review as a 500).
    with pytest.raises(BadUserInput) as raised:
        story(prompt="A cat \ud800")
    assert raised.value.extensions["field"] == "prompt"
