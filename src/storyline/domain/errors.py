"""Errors a client is meant to see, each carrying the contract's ``extensions.code``.

Anything raised that is not a :class:`StorylineError` is unexpected and gets masked.
"""

from __future__ import annotations

from typing import Any, ClassVar


class StorylineError(Exception):
    code: ClassVar[str] = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class Unauthenticated(StorylineError):
    code = "UNAUTHENTICATED"

    def __init__(self, message: str = "A valid bearer token is required.") -> None:
        super().__init__(message)


class Forbidden(StorylineError):
    code = "FORBIDDEN"

    def __init__(self, action: str) -> None:
        super().__init__(f"Your role may not {action}.")


class NotFound(StorylineError):
    code = "NOT_FOUND"

    def __init__(self, what: str = "Project") -> None:
        super().__init__(f"{what} not found.")


class BadUserInput(StorylineError):
    code = "BAD_USER_INPUT"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", field=field)


class InsufficientCredits(StorylineError):
    code = "INSUFFICIENT_CREDITS"

    def __init__(self, *, required: int, balance: int) -> None:
        super().__init__(
            f"This costs {required} credits; the balance is {balance}.",
            required=required,
            balance=balance,
        )


class IdempotencyConflict(StorylineError):
    code = "IDEMPOTENCY_CONFLICT"

    def __init__(self) -> None:
        super().__init__(
            "idempotencyKey was already used with a different input.", field="idempotencyKey"
        )


class InvalidTransition(StorylineError):
    code = "INVALID_TRANSITION"

    def __init__(self, current: str, reported: str) -> None:
        super().__init__(
            f"A {current} project cannot move to {reported}.", current=current, reported=reported
        )


class UpstreamFailed(StorylineError):
    code = "UPSTREAM_FAILED"

    def __init__(self, project_id: str, reason: str) -> None:
        super().__init__(
            f"The video service did not take the job ({reason}); the credits were refunded.",
            projectId=project_id,
        )
