"""The users and the admins: generateStory (half with an idempotency key, a timed-out one
often sent again blindly) and grantCredits, at a human pace each, many at once."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.client import token

from chaos.client import DROPPED, TIMEOUT, UNREACHABLE, Answer, Api
from chaos.record import Recorder
from storyline.auth import Role

GENERATE = """
mutation Generate($input: GenerateStoryInput!) {
  generateStory(input: $input) { id status version }
}
"""
GRANT = """
mutation Grant($userId: ID!, $amount: Int!, $reason: String!) {
  grantCredits(userId: $userId, amount: $amount, reason: $reason) { userId balance }
}
"""
QUALITIES = ("SD", "HD", "FULL_HD")
# A user's request may be answered with these; anything else is listed in the report.
EXPECTED = ("ok", "INSUFFICIENT_CREDITS", "UPSTREAM_FAILED", TIMEOUT, DROPPED, UNREACHABLE)
CLIENT_TIMEOUT = 2.5  # seconds a user waits for generateStory before giving up on it


@dataclass
class Users:
    api: Api
    recorder: Recorder
    rng: random.Random
    think: tuple[float, float]  # seconds between a user's two requests
    on_project: Callable[[str, str], None]  # (user, project id) of each project made
    # (user, idempotency key) -> the project ids its answers named
    keys: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))

    async def run_user(self, user: str) -> None:
        bearer = token(user)
        while True:
            await asyncio.sleep(self.rng.uniform(*self.think))
            variables: dict[str, Any] = {
                "input": {
                    "prompt": f"A story for {user}",
                    "quality": self.rng.choice(QUALITIES),
                    "seed": self.rng.randrange(1000),
                }
            }
            key = None
            if self.rng.random() < 0.5:
                key = f"key-{uuid.uuid4()}"
                variables["input"]["idempotencyKey"] = key
            answer = await self._generate(variables, bearer)
            # Timed out: the user does not know whether it was made, and often asks again,
            # the same request, blindly (with or without a key: only a key makes it safe).
            for _ in range(2):
                if answer.outcome != TIMEOUT or self.rng.random() < 0.3:
                    break
                answer = await self._generate(variables, bearer)
            if answer.data is not None:
                project = answer.data["generateStory"]
                self.recorder.made(project["id"], project["version"], answer.sent)
                if key is not None:
                    self.keys[(user, key)].add(project["id"])
                self.on_project(user, project["id"])

    async def _generate(self, variables: dict[str, Any], bearer: str) -> Answer:
        answer = await self.api.call(GENERATE, variables, token=bearer, patience=CLIENT_TIMEOUT)
        detail = "" if answer.outcome in EXPECTED else answer.detail or answer.outcome
        self.recorder.operation(
            "generateStory", answer.outcome, detail=detail, request_id=answer.request_id
        )
        return answer


class Admins:
    """Top-ups, so that users keep generating."""

    def __init__(self, api: Api, recorder: Recorder, rng: random.Random, users: list[str]) -> None:
        self.api = api
        self.recorder = recorder
        self.rng = rng
        self.users = users
        self.token = token("chaos-admin", Role.ADMIN)

    async def run(self, interval: tuple[float, float]) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(*interval))
            variables = {
                "userId": self.rng.choice(self.users),
                "amount": self.rng.randrange(60, 300),
                "reason": "chaos top-up",
            }
            answer = await self.api.call(GRANT, variables, token=self.token, patience=3.0)
            expected = ("ok", TIMEOUT, DROPPED, UNREACHABLE)
            detail = "" if answer.outcome in expected else answer.detail or answer.outcome
            self.recorder.operation(
                "grantCredits", answer.outcome, detail=detail, request_id=answer.request_id
            )
