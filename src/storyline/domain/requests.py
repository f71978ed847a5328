"""What clients ask for, checked: every bad value is refused with the field it came in."""

from __future__ import annotations

import enum
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from storyline.domain.errors import BadUserInput
from storyline.domain.lifecycle import Report, Status
from storyline.domain.pricing import Quality

MAX_PROMPT = 4000
MAX_IDEMPOTENCY_KEY = 255
MAX_IMAGE_MODEL = 200
MAX_STAGE = 200
MAX_ERROR_MESSAGE = 131_072
MAX_RESULT_URL = 2048
MAX_EXTERNAL_ID = 255
MAX_USER_ID = 255
MAX_REASON = 500
MAX_PAGE = 100
SEED_RANGE = (0, 2**31 - 1)
URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


class AspectRatio(enum.Enum):
    LANDSCAPE_16_9 = "LANDSCAPE_16_9"
    PORTRAIT_9_16 = "PORTRAIT_9_16"
    SQUARE_1_1 = "SQUARE_1_1"
    CLASSIC_4_3 = "CLASSIC_4_3"


@dataclass(frozen=True, slots=True)
class StoryRequest:
    prompt: str
    quality: Quality
    aspect_ratio: AspectRatio
    image_model: str
    seed: int | None
    idempotency_key: str | None

    @classmethod
    def checked(
        cls,
        *,
        prompt: str,
        quality: Quality,
        aspect_ratio: AspectRatio,
        image_model: str,
        seed: int | None,
        idempotency_key: str | None,
    ) -> StoryRequest:
        prompt = text("prompt", prompt.strip(), MAX_PROMPT)
        image_model = text("imageModel", image_model.strip(), MAX_IMAGE_MODEL)
        if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
            raise BadUserInput("seed", f"must be between {SEED_RANGE[0]} and {SEED_RANGE[1]}")
        if idempotency_key is not None:
            text("idempotencyKey", idempotency_key, MAX_IDEMPOTENCY_KEY)
        return cls(prompt, quality, aspect_ratio, image_model, seed, idempotency_key)

    def fingerprint(self) -> str:
        """Identifies the input an idempotency key was first used with."""
        # Stored with every project, so it must not change: the same keys as ever (the
        # fields but the key), written out rather than by dataclasses.asdict, which deep-copies.
        fields = {
            "prompt": self.prompt,
            "quality": self.quality.value,
            "aspect_ratio": self.aspect_ratio.value,
            "image_model": self.image_model,
            "seed": self.seed,
        }
        canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A pipeline report, naming its project by exactly one of the two ids."""

    project_id: uuid.UUID | None
    external_id: str | None
    report: Report

    @classmethod
    def checked(
        cls,
        *,
        project_id: str | None,
        external_id: str | None,
        status: Status,
        progress: int | None,
        stage: str | None,
        error_message: str | None,
        result_url: str | None,
    ) -> StatusReport:
        if (project_id is None) == (external_id is None):
            raise BadUserInput("projectId", "give exactly one of projectId and externalId")
        if external_id is not None:
            text("externalId", external_id, MAX_EXTERNAL_ID)
        if progress is not None and not 0 <= progress <= 100:
            raise BadUserInput("progress", "must be between 0 and 100")
        if stage is not None:
            text("stage", stage, MAX_STAGE, empty=True)
        if error_message is not None:
            text("errorMessage", error_message, MAX_ERROR_MESSAGE, empty=True)
        if result_url is not None:
            check_url(result_url)
        return cls(
            project_id=None if project_id is None else parse_id("projectId", project_id),
            external_id=external_id,
            report=Report(status, progress, stage, error_message, result_url),
        )


def text(field: str, value: str, longest: int, *, empty: bool = False) -> str:
    """A text PostgreSQL can store (no NUL) of at most ``longest`` characters."""
    if "\x00" in value:
        raise BadUserInput(field, "must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate: not text PostgreSQL (or JSON) can hold
        raise BadUserInput(field, "must be valid Unicode") from None
    if len(value) > longest:
        raise BadUserInput(field, f"must be at most {longest} characters")
    if not value and not empty:
        raise BadUserInput(field, "must not be empty")
    return value


def parse_id(field: str, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadUserInput(field, "is not a project id") from None


def check_url(value: str) -> None:
    text("resultUrl", value, MAX_RESULT_URL)
    if not URL_CHARACTERS.fullmatch(value):
        # RFC 3986 characters only (others are percent-encoded): no spaces, quotes,
        # backslashes or control characters, so the URL passes through NOTIFY unescaped.
        raise BadUserInput("resultUrl", "must be a URL of printable ASCII, percent-encoded")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise BadUserInput("resultUrl", "is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadUserInput("resultUrl", "must be an http or https URL")


def check_page_size(first: int) -> None:
    if not 1 <= first <= MAX_PAGE:
        raise BadUserInput("first", f"must be between 1 and {MAX_PAGE}")


def check_grant(*, user_id: str, amount: int, reason: str) -> str:
    """The reason, trimmed."""
    text("userId", user_id, MAX_USER_ID)
    if amount <= 0:
        raise BadUserInput("amount", "must be greater than 0")
    return text("reason", reason.strip(), MAX_REASON)
