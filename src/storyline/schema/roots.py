"""Query and Mutation roots, and the schema built from them."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import aclosing
from datetime import datetime
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult
from strawberry.types.execution import ExecutionContext
from strawberry.types.graphql import OperationType

from storyline.auth import Role
from storyline.compat.strawberry import graphql_schema, operation_types_allowed
from storyline.config import Settings
from storyline.domain.pricing import price
from storyline.schema.context import Info
from storyline.schema.documents import DocumentGuard, GuardedDocuments
from storyline.schema.enums import Quality, Status
from storyline.schema.errors import ClientErrors, is_unexpected
from storyline.schema.execution import AcyclicExecutionContext
from storyline.schema.inputs import GenerateStoryInput, UpdateStatusInput
from storyline.schema.observed import OperationMetrics
from storyline.schema.operations import OperationChoice
from storyline.schema.persisted import PersistedDocuments
from storyline.schema.types import (
    Account,
    AccountChange,
    Project,
    ProjectConnection,
    ProjectStatusEvent,
    account_change,
)
from storyline.usecases import queries
from storyline.usecases.account_changes import watch_account
from storyline.usecases.generate_story import generate_story
from storyline.usecases.grant_credits import grant_credits
from storyline.usecases.subscriptions import watch_project
from storyline.usecases.update_status import update_status

log = logging.getLogger("storyline.schema")


@strawberry.type
class Query:
    @strawberry.field
    async def me(self, info: Info) -> Account:
        principal = info.context.principal
        balance = await queries.account_balance(info.context.services, principal)
        return Account(user_id=strawberry.ID(principal.user_id), balance=balance)

    @strawberry.field
    async def project(self, info: Info, id: strawberry.ID) -> Project | None:
        record = await queries.project(info.context.services, info.context.principal, id)
        return None if record is None else Project.of(record)

    @strawberry.field
    async def projects(
        self,
        info: Info,
        status: Status | None = strawberry.UNSET,
        first: int = 20,
        after: str | None = strawberry.UNSET,
    ) -> ProjectConnection:
        page = await queries.project_page(
            info.context.services,
            info.context.principal,
            status=status or None,
            first=first,
            after=after or None,
        )
        return ProjectConnection.of(page)

    @strawberry.field
    def price(self, info: Info, quality: Quality = Quality.HD) -> int:
        info.context.principal  # noqa: B018 - every query needs a token
        return price(quality)


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def generate_story(self, info: Info, input: GenerateStoryInput) -> Project:
        record = await generate_story(
            info.context.services, info.context.principal, input.checked()
        )
        return Project.of(record)

    @strawberry.mutation
    async def update_status(self, info: Info, input: UpdateStatusInput) -> Project:
        info.context.principal.require("report a project's status", Role.PIPELINE, Role.ADMIN)
        record = await update_status(info.context.services, input.checked())
        return Project.of(record)

    @strawberry.mutation
    async def grant_credits(
        self, info: Info, user_id: strawberry.ID, amount: int, reason: str
    ) -> Account:
        info.context.principal.require("grant credits", Role.ADMIN)
        balance = await grant_credits(
            info.context.services,
            user_id=str(user_id),
            amount=amount,
            reason=reason,
        )
        return Account(user_id=user_id, balance=balance)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def project_status(
        self, info: Info, project_id: strawberry.ID
    ) -> AsyncGenerator[ProjectStatusEvent, None]:
        services = info.context.services
        events = watch_project(services, info.context.principal, str(project_id))
        # aclosing: a client that leaves ends the watch (and its mailbox) now, not at GC.
        async with aclosing(events):
            async for event in events:
                yield ProjectStatusEvent.of(event)
                services.metrics.events.inc()

    @strawberry.subscription
    async def account_changes(
        self, info: Info, since: datetime | None = strawberry.UNSET
    ) -> AsyncGenerator[AccountChange, None]:
        services = info.context.services
        events = watch_account(services, info.context.principal, since or None)
        async with aclosing(events):
            async for event in events:
                yield account_change(event)
                services.metrics.events.inc()


class StorylineSchema(strawberry.Schema):
    """strawberry's schema, with the guard every document of every path goes through, and
    what resolves a request's document (by its text or its hash) before it meets the guard."""

    documents: DocumentGuard
    persisted: PersistedDocuments

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        # One result cannot carry a subscription: strawberry's HTTP view allows them (for
        # its multipart transport) and execution then fails inside the resolver. Refused
        # before anything runs, as an operation type this transport does not serve.
        allowed = operation_types_allowed(allowed_operation_types)
        allowed.discard(OperationType.SUBSCRIPTION)
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed,
            operation_extensions,
        )

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Expected errors are answers, not incidents: log only what will be masked.
        for error in errors:
            if is_unexpected(error):
                log.error("unexpected error in %s", error.path, exc_info=error.original_error)


def build_schema(
    settings: Settings | None = None, *, traces: Callable[[], SchemaExtension] | None = None
) -> StorylineSchema:
    """The schema with the limits and trusted documents of ``settings`` (defaults when
    None), and ``traces``, the tracing extension's factory, when tracing is on
    (storyline.telemetry). Raises ManifestError for a trusted-documents manifest it cannot
    run."""
    settings = settings or Settings.model_construct()
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        *([traces] if traces is not None else []),  # outermost: its span covers the rest
        OperationMetrics,  # first in, last out: it sees the errors as clients will
        ClientErrors,
        GuardedDocuments,
        OperationChoice,  # after GuardedDocuments: it adds to the errors that one sets
    ]
    schema = StorylineSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        execution_context_class=AcyclicExecutionContext,
    )
    schema.documents = DocumentGuard.for_settings(graphql_schema(schema), settings)
    schema.persisted = PersistedDocuments.load(settings.trusted_documents, schema.documents)
    return schema
