"""The one place where errors become what clients see.

A StorylineError keeps its message and gets ``extensions.code``; parse, validation and
coercion errors keep theirs and get BAD_USER_INPUT; anything else is logged and masked as
INTERNAL_SERVER_ERROR.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from storyline.domain.errors import StorylineError

log = logging.getLogger(__name__)

MASKED_MESSAGE = "Internal server error."


def is_unexpected(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and not isinstance(original, (StorylineError, GraphQLError))


def for_client(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if isinstance(original, StorylineError):
        extensions = {"code": original.code, **original.extensions}
        message = original.message
    elif is_unexpected(error):
        extensions = {"code": "INTERNAL_SERVER_ERROR"}
        message = MASKED_MESSAGE
    elif (error.extensions or {}).get("code"):
        return error
    else:
        # Parse, validation and variable-coercion errors, and the query limits: the
        # request itself is bad input. graphql-core's message says what and where.
        extensions = {**(error.extensions or {}), "code": "BAD_USER_INPUT"}
        message = error.message
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )


class ClientErrors(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        _map_errors(self.execution_context.result)

    def on_stream_result(self, result: object) -> Iterator[None]:
        """Each result of a subscription, before it is sent."""
        _map_errors(result)
        yield


def _map_errors(result: object) -> None:
    errors = getattr(result, "errors", None)
    if errors:
        result.errors = [for_client(error) for error in errors]  # type: ignore[attr-defined]
