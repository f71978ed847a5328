"""Per-operation metrics: count and time every query and mutation by root field and outcome."""

from __future__ import annotations

from collections.abc import Iterator
from time import perf_counter

from graphql import FieldNode, OperationDefinitionNode, OperationType
from strawberry.extensions import SchemaExtension

from storyline import logs
from storyline.schema.context import Context
from storyline.schema.documents import unparsed

ROOT_FIELDS = frozenset(
    {"me", "project", "projects", "price", "generateStory", "updateStatus", "grantCredits"}
    | {"__schema", "__type", "__typename"}
)


class OperationMetrics(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        logs.operation.set(self.operation_label() or "projectStatus")
        yield

    def on_operation(self) -> Iterator[None]:
        started = perf_counter()
        yield
        context = self.execution_context.context
        operation = self.operation_label()
        if not isinstance(context, Context) or operation is None:
            return  # subscriptions are counted by the events they deliver
        errors = getattr(self.execution_context.result, "errors", None) or []
        outcome = "ok"
        if errors:
            outcome = str((errors[0].extensions or {}).get("code", "GRAPHQL_ERROR"))
        context.services.metrics.observe(operation, outcome, started)

    def operation_label(self) -> str | None:
        """The first root field's name; None for a subscription."""
        document = self.execution_context.graphql_document
        if unparsed(document):
            return "unparsed"
        assert document is not None
        name = self.execution_context.operation_name
        for definition in document.definitions:
            if not isinstance(definition, OperationDefinitionNode):
                continue
            if name is not None and (definition.name is None or definition.name.value != name):
                continue
            if definition.operation is OperationType.SUBSCRIPTION:
                return None
            for selection in definition.selection_set.selections:
                if isinstance(selection, FieldNode):
                    name = selection.name.value
                    # Only the schema's own names become labels: clients cannot add series.
                    return name if name in ROOT_FIELDS else "invalid"
        return "invalid"
