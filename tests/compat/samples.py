"""A small strawberry schema for the compat pins: one field of each operation type."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"


@strawberry.type
class Mutation:
    @strawberry.mutation
    def poke(self) -> int:
        return 1


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def count(self, upto: int) -> AsyncGenerator[int, None]:
        for number in range(upto):
            yield number


SCHEMA = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)
