"""Every check a GraphQL document passes before it runs, in one place, and its cache.

Both ways an operation reaches the executor go through :class:`DocumentGuard`: strawberry's
ordinary path (the :class:`GuardedDocuments` extension fills in the parsed document and its
validation errors) and the live fan-out (schema/fanout.py asks the guard directly). So no
path can skip a limit the other enforces.

Each check costs time linear in the document's size. A size limit in bytes comes first (a
string literal is one token, so a token limit alone lets megabytes through), then the
parser's own token limit, then graphql-core's rules and the depth and alias limits below.
Those two remember each fragment's result: a limiter that walks every spread afresh does
work exponential in the number of fragments (each spreading the next one twice doubles
it), which a few hundred anonymous bytes turn into minutes of a blocked event loop.

The cache holds a document with its errors, keyed by text, and is bounded by the memory
its entries hold, not by their count: distinct large documents cannot fill it past its
budget, however many a client sends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationContext,
    parse,
    specified_rules,
    validate,
)
from strawberry.extensions import SchemaExtension

from storyline.compat.strawberry import VALIDATION_RULES
from storyline.config import Settings
from storyline.schema.document_cache import ByteBoundedCache, deep_size

# graphql-core's suggestions ("Did you mean 'updateStatus'?") name fields and types: with
# introspection off they would still let a client map the schema by guessing.
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


@dataclass(frozen=True, slots=True)
class Checked:
    """A document that parsed (``document``) and its validation errors, or, when it did not
    parse or was too large, ``document`` None and the reason in ``errors``."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...]

    @property
    def valid(self) -> bool:
        return self.document is not None and not self.errors


class DocumentGuard:
    """Parses and validates documents for one schema, with the server's limits."""

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        max_bytes: int,
        max_tokens: int,
        max_depth: int,
        max_aliases: int,
        introspection: bool,
        cache_bytes: int,
    ) -> None:
        self.schema = schema
        self.max_bytes = max_bytes
        self.max_tokens = max_tokens
        self.introspection = introspection
        rules: list[type[ASTValidationRule]] = [
            *specified_rules,
            *VALIDATION_RULES,  # what strawberry's own validation adds to graphql-core's
            limits_rule(max_depth=max_depth, max_aliases=max_aliases),
        ]
        if not introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self.rules = tuple(rules)
        self.cache: ByteBoundedCache[str, Checked] = ByteBoundedCache(cache_bytes)

    @classmethod
    def for_settings(cls, schema: GraphQLSchema, settings: Settings) -> DocumentGuard:
        return cls(
            schema,
            max_bytes=settings.max_query_bytes,
            max_tokens=settings.max_query_tokens,
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_query_aliases,
            introspection=settings.introspection,
            cache_bytes=settings.document_cache_bytes,
        )

    def check(self, query: str) -> Checked:
        # At most four bytes a character: the encoding is needed only near the limit. Too
        # large a document is refused afresh each time, never cached under its own text.
        if len(query) * 4 > self.max_bytes and _utf8_length(query) > self.max_bytes:
            refused = GraphQLError(f"The document is larger than {self.max_bytes} bytes.")
            return Checked(None, (refused,))
        cached = self.cache.get(query)
        if cached is not None:
            return cached
        checked = self._check(query)
        self.cache.put(query, checked, len(query) + deep_size(checked.document))
        return checked

    def _check(self, query: str) -> Checked:
        try:
            document = parse(query, max_tokens=self.max_tokens)
        except GraphQLError as error:
            error.__traceback__ = None  # kept in the cache: without the parser's frames
            return Checked(None, (error,))
        errors = validate(self.schema, document, self.rules)
        if not self.introspection:
            errors = [_without_suggestions(error) for error in errors]
        return Checked(document, tuple(errors))


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _without_suggestions(error: GraphQLError) -> GraphQLError:
    message = _SUGGESTION.sub("", error.message)
    if message == error.message:
        return error
    return GraphQLError(message, nodes=error.nodes, source=error.source, positions=error.positions)


class GuardedDocuments(SchemaExtension):
    """strawberry's parse and validate steps, done by the schema's guard (and its cache).

    A document that did not parse is answered as one that did not validate (a
    pre-execution error, BAD_USER_INPUT): strawberry is handed a document with one empty
    operation of an allowed type, and the errors as already found, so it neither parses
    nor validates again. (Raised from here instead, a parse error would escape strawberry's
    subscription handler: a bare ``complete`` and an ERROR logged.)
    """

    checked: Checked | None = None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        guard: DocumentGuard = context.schema.documents  # type: ignore[attr-defined]
        if context.query and context.graphql_document is None:
            self.checked = guard.check(context.query)
            if self.checked.document is None:
                allowed = next(iter(context.allowed_operations))
                context.graphql_document = _unparsed(OperationType(allowed.value))
                context.pre_execution_errors = list(self.checked.errors)
            else:
                context.graphql_document = self.checked.document
        yield

    def on_validate(self) -> Iterator[None]:
        if self.checked is not None and self.checked.document is not None:
            # Set, even when empty: strawberry then skips its own validation.
            self.execution_context.pre_execution_errors = list(self.checked.errors)
        yield


def _unparsed(operation: OperationType) -> DocumentNode:
    return DocumentNode(
        definitions=(
            OperationDefinitionNode(
                operation=operation, selection_set=SelectionSetNode(selections=())
            ),
        )
    )


def unparsed(document: DocumentNode | None) -> bool:
    """Whether a request's document is missing or stands in for one that did not parse
    (parsed documents keep their locations)."""
    return document is None or document.loc is None


def limits_rule(*, max_depth: int, max_aliases: int) -> type[ASTValidationRule]:
    """A validation rule refusing operations nested deeper than ``max_depth`` fields or
    holding more than ``max_aliases`` aliased fields (fragments counted where spread)."""

    class OperationLimits(ASTValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            measure = _Measure(context.document)
            aliases = 0
            for definition in context.document.definitions:
                if not isinstance(definition, OperationDefinitionNode):
                    continue
                depth, count = measure.selections(definition.selection_set)
                aliases += count
                if depth > max_depth:
                    name = definition.name.value if definition.name else "anonymous"
                    context.report_error(
                        GraphQLError(
                            f"'{name}' exceeds maximum operation depth of {max_depth}",
                            definition,
                        )
                    )
            if aliases > max_aliases:
                shown = f"More than {max_aliases}" if aliases == _SATURATED else str(aliases)
                context.report_error(GraphQLError(f"{shown} aliases found. Allowed: {max_aliases}"))

    return OperationLimits


# Alias counts stop growing here: a document can spread a fragment 2^n times, and the
# answer only has to say that it is too many.
_SATURATED = 1 << 32


class _Measure:
    """Depth and alias count of selection sets, each named fragment measured once.

    Depth counts the levels of fields below the operation (its root fields are level 0),
    not descending into introspection fields; aliases count every aliased field as often
    as it would be executed. A fragment met again while being measured (a cycle, which
    graphql-core's own rule reports) counts as empty.
    """

    def __init__(self, document: DocumentNode) -> None:
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.measured: dict[str, tuple[int, int]] = {}
        self.in_progress: set[str] = set()

    def selections(self, selection_set: SelectionSetNode | None) -> tuple[int, int]:
        # Iterative over nested fields would be longer to read; the parser's own recursion
        # bounds this one at the same nesting.
        depth = aliases = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                if selection.alias is not None:
                    aliases += 1
                if selection.selection_set is not None and not selection.name.value.startswith(
                    "__"
                ):
                    inner_depth, inner_aliases = self.selections(selection.selection_set)
                    depth = max(depth, 1 + inner_depth)
                    aliases += inner_aliases
            elif isinstance(selection, InlineFragmentNode):
                inner_depth, inner_aliases = self.selections(selection.selection_set)
                depth, aliases = max(depth, inner_depth), aliases + inner_aliases
            elif isinstance(selection, FragmentSpreadNode):
                inner_depth, inner_aliases = self.fragment(selection.name.value)
                depth, aliases = max(depth, inner_depth), aliases + inner_aliases
        return depth, min(aliases, _SATURATED)

    def fragment(self, name: str) -> tuple[int, int]:
        known = self.measured.get(name)
        if known is not None:
            return known
        definition = self.fragments.get(name)
        if definition is None or name in self.in_progress:
            return 0, 0
        self.in_progress.add(name)
        result = self.selections(definition.selection_set)
        self.in_progress.discard(name)
        self.measured[name] = result
        return result
