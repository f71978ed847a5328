"""Which operation of a document runs: the one the request names, and none if it names none
of several (the GraphQL spec's GetOperation).

strawberry falls back to a document's first operation when the request names none, so
``query A {…} query B {…}`` without ``operationName`` ran A. The spec makes it a request
error; graphql-core's own message is kept.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError, OperationDefinitionNode
from strawberry.extensions import SchemaExtension

from storyline.compat.strawberry import provided_operation_name

MUST_NAME_ONE = "Must provide operation name if query contains multiple operations."


class OperationChoice(SchemaExtension):
    """Refuses, at validation, a document of several operations that names none.

    Must come after any extension that sets the validation errors itself (a validation
    cache), since it adds to them: StorylineSchema appends it after the configured ones.
    """

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        # Not context.operation_name: strawberry's is already the first operation's when
        # the request named none.
        if (
            document is not None
            and len(document.definitions) > 1
            and provided_operation_name(context) is None
            and sum(isinstance(d, OperationDefinitionNode) for d in document.definitions) > 1
        ):
            context.pre_execution_errors = [
                *(context.pre_execution_errors or ()),
                GraphQLError(MUST_NAME_ONE),
            ]
        yield
