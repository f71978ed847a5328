"""Test helpers: run Storyline (and stand-ins) on real sockets, and talk to it like a client."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.types import ASGIApp

from storyline.app import create_app
from storyline.auth import Role, issue_token
from storyline.config import Settings
from storyline.server import uvicorn_options
from storyline.services import Services

JWT_SECRET = "8inkGnTVezcgASoN6y-wtuFFFEPs4Pkw05njs5rj78d_5zoOCWVlxGqexIf4lJAP"
UPSTREAM_TOKEN = "upstream-secret-token"  # what Storyline sends to the video service


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with free_socket() as sock:
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serving(
    app: ASGIApp, sock: socket.socket | None = None, **options: Any
) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn in this event loop; yields its base URL."""
    sock = sock or free_socket()
    port = sock.getsockname()[1]
    options = {"ws_per_message_deflate": False, **options}
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def storyline(database_url: str, **overrides: Any) -> AsyncIterator[Api]:
    """A Storyline instance on a real port, configured like production but for ``overrides``."""
    values: dict[str, Any] = {
        "jwt_secret": JWT_SECRET,
        # Also the built-in simulator's, which would otherwise generate one in the data dir.
        "upstream_token": UPSTREAM_TOKEN,
        "upstream_timeout": 1.0,
        **overrides,
    }
    settings = Settings.model_validate(values)
    sock = free_socket()
    self_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(settings, database_url=database_url, self_url=self_url)
    served = serving(app, sock, **uvicorn_options(settings))
    async with served as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield Api(http, app)


def token(subject: str, role: Role = Role.USER, *, ttl: float | None = None) -> str:
    return issue_token(JWT_SECRET, subject, role=role, ttl=ttl)


def new_user() -> str:
    return f"user-{uuid.uuid4()}"


@dataclass
class Api:
    http: httpx.AsyncClient
    app: Starlette

    @property
    def url(self) -> str:
        return str(self.http.base_url).rstrip("/")

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, auth: str | None
    ) -> dict[str, Any]:
        """The GraphQL response body; ``auth`` is a raw token or None."""
        headers = {} if auth is None else {"Authorization": f"Bearer {auth}"}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(
        self, query: str, variables: dict[str, Any] | None = None, *, auth: str | None
    ) -> dict[str, Any]:
        """The data of a request that must succeed."""
        body = await self.post(query, variables, auth=auth)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    async def error(
        self, query: str, variables: dict[str, Any] | None = None, *, auth: str | None
    ) -> dict[str, Any]:
        """The one error of a request that must fail."""
        body = await self.post(query, variables, auth=auth)
        assert len(body.get("errors", [])) == 1, body
        error: dict[str, Any] = body["errors"][0]
        return error

    async def generate(self, user: str, **fields: Any) -> dict[str, Any]:
        variables = {"input": {"prompt": "A cat", **fields}}
        return await self.post(GENERATE, variables, auth=token(user))

    async def report(self, **fields: Any) -> dict[str, Any]:
        return await self.post(REPORT, {"input": fields}, auth=token("pipeline", Role.PIPELINE))

    async def grant(self, user: str, amount: int) -> None:
        await self.data(
            GRANT,
            {"userId": user, "amount": amount, "reason": "test top-up"},
            auth=token("admin", Role.ADMIN),
        )


PROJECT_FIELDS = """
    id externalId status creditsUsed errorMessage progress stage resultUrl
    prompt quality aspectRatio version createdAt updatedAt
"""
GENERATE = f"""
mutation Generate($input: GenerateStoryInput!) {{
  generateStory(input: $input) {{ {PROJECT_FIELDS} }}
}}
"""
REPORT = f"""
mutation Report($input: UpdateStatusInput!) {{ updateStatus(input: $input) {{ {PROJECT_FIELDS} }} }}
"""
GRANT = """
mutation Grant($userId: ID!, $amount: Int!, $reason: String!) {
  grantCredits(userId: $userId, amount: $amount, reason: $reason) { userId balance }
}
"""


@dataclass(frozen=True)
class Books:
    """One user's money and projects, read straight from the database."""

    balance: int | None
    ledger: list[tuple[str, int, str | None]]  # (kind, amount, project id)
    projects: list[tuple[str, str]]  # (id, status)


async def books(engine: AsyncEngine, user: str) -> Books:
    async with engine.connect() as conn:
        balance = await conn.scalar(
            text("SELECT balance FROM accounts WHERE user_id = :u"), {"u": user}
        )
        ledger = await conn.execute(
            text(
                "SELECT kind, amount, project_id::text FROM ledger WHERE user_id = :u ORDER BY id"
            ),
            {"u": user},
        )
        projects = await conn.execute(
            text("SELECT id::text, status FROM projects WHERE user_id = :u ORDER BY created_at"),
            {"u": user},
        )
        return Books(
            balance,
            [(row[0], row[1], row[2]) for row in ledger],
            [(row[0], row[1]) for row in projects],
        )


async def row_counts(engine: AsyncEngine) -> dict[str, int]:
    """How many accounts, projects and ledger rows exist: a refused request adds none."""
    async with engine.connect() as conn:
        return {
            table: int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)  # noqa: S608
            for table in ("accounts", "projects", "ledger")
        }
