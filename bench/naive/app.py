"""The naive stack's app: updateStatus, projectStatus, project; the contract's names."""

from __future__ import annotations

import argparse
import enum
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import jwt
import strawberry
import uvicorn
from broadcaster import Broadcast
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL


class Base(DeclarativeBase):
    pass


class ProjectRow(Base):
    __tablename__ = "projects"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_id: Mapped[str]
    status: Mapped[str]
    progress: Mapped[int | None]
    stage: Mapped[str | None]
    error_message: Mapped[str | None]
    result_url: Mapped[str | None]
    version: Mapped[int]
    updated_at: Mapped[datetime]


@strawberry.enum
class ProjectStatus(enum.Enum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@strawberry.type
class ProjectStatusEvent:
    project_id: strawberry.ID
    status: ProjectStatus
    version: int
    progress: int | None
    stage: str | None
    error_message: str | None
    result_url: str | None
    updated_at: datetime


@strawberry.type
class Project:
    id: strawberry.ID
    status: ProjectStatus
    version: int
    progress: int | None
    stage: str | None


@strawberry.input
class UpdateStatusInput:
    project_id: strawberry.ID | None = None
    external_id: str | None = None
    status: ProjectStatus
    progress: int | None = None
    stage: str | None = None
    error_message: str | None = None
    result_url: str | None = None


def event_of(row: ProjectRow) -> dict[str, Any]:
    return {
        "project_id": str(row.id),
        "status": row.status,
        "version": row.version,
        "progress": row.progress,
        "stage": row.stage,
        "error_message": row.error_message,
        "result_url": row.result_url,
        "updated_at": row.updated_at.isoformat(),
    }


def to_event(data: dict[str, Any]) -> ProjectStatusEvent:
    return ProjectStatusEvent(
        project_id=strawberry.ID(data["project_id"]),
        status=ProjectStatus(data["status"]),
        version=data["version"],
        progress=data["progress"],
        stage=data["stage"],
        error_message=data["error_message"],
        result_url=data["result_url"],
        updated_at=datetime.fromisoformat(data["updated_at"]),
    )


def build(database_url: str, jwt_secret: str) -> Starlette:
    engine = create_async_engine(database_url.replace("postgresql://", "postgresql+asyncpg://"))
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    broadcast = Broadcast(database_url)

    def role(info: strawberry.Info) -> str:
        header = info.context["request"].headers.get("authorization", "")
        claims = jwt.decode(header.removeprefix("Bearer "), jwt_secret, algorithms=["HS256"])
        return str(claims.get("role", "user"))

    @strawberry.type
    class Query:
        @strawberry.field
        async def project(self, id: strawberry.ID) -> Project | None:
            async with sessions() as session:
                row = await session.get(ProjectRow, uuid.UUID(id))
            if row is None:
                return None
            return Project(
                id=strawberry.ID(str(row.id)),
                status=ProjectStatus(row.status),
                version=row.version,
                progress=row.progress,
                stage=row.stage,
            )

    @strawberry.type
    class Mutation:
        @strawberry.mutation
        async def update_status(self, info: strawberry.Info, input: UpdateStatusInput) -> Project:
            if role(info) not in ("pipeline", "admin"):
                raise PermissionError("forbidden")
            async with sessions() as session:
                row = await session.get(ProjectRow, uuid.UUID(str(input.project_id)))
                if row is None:
                    raise LookupError("not found")
                row.status = input.status.value
                row.progress = input.progress
                row.stage = input.stage
                await session.commit()
                await session.refresh(row)
            # Publish after commit.
            await broadcast.publish(channel=f"project_{row.id}", message=json.dumps(event_of(row)))
            return Project(
                id=strawberry.ID(str(row.id)),
                status=ProjectStatus(row.status),
                version=row.version,
                progress=row.progress,
                stage=row.stage,
            )

    @strawberry.type
    class Subscription:
        @strawberry.subscription
        async def project_status(
            self, project_id: strawberry.ID
        ) -> AsyncGenerator[ProjectStatusEvent, None]:
            async with broadcast.subscribe(channel=f"project_{project_id}") as subscriber:
                async with sessions() as session:
                    row = await session.get(ProjectRow, uuid.UUID(str(project_id)))
                if row is None:
                    raise LookupError("not found")
                yield to_event(event_of(row))
                async for event in subscriber:  # type: ignore[union-attr]
                    yield to_event(json.loads(event.message))

    schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)
    graphql: GraphQL[Any, Any] = GraphQL(schema)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await broadcast.connect()
        try:
            yield
        finally:
            await broadcast.disconnect()
            await engine.dispose()

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--jwt-secret", required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    # uvicorn's defaults, as a newcomer would run it (per-message deflate on).
    uvicorn.run(
        build(args.database_url, args.jwt_secret),
        host="127.0.0.1",
        port=args.port,
        log_level=args.log_level,
    )
