"""The one GraphQL client over HTTP the tests speak through, and the tokens it carries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette

from storyline.auth import Role, issue_token
from storyline.services import Services

JWT_SECRET = "8inkGnTVezcgASoN6y-wtuFFFEPs4Pkw05njs5rj78d_5zoOCWVlxGqexIf4lJAP"
UPSTREAM_TOKEN = "upstream-secret-token"  # what Storyline sends to the video service
# uvicorn closes a keep-alive connection idle for 5 s, and httpx reuses one idle for up to
# 5 s: a request sent as the server closes it fails with ReadError. The tests' clients let
# go of idle connections well before the server does.
LIMITS = httpx.Limits(keepalive_expiry=1.0)


def token(subject: str, role: Role = Role.USER, *, ttl: float | None = None) -> str:
    return issue_token(JWT_SECRET, subject, role=role, ttl=ttl)


def bearer(subject: str, role: Role = Role.USER, *, ttl: float | None = None) -> str:
    """An Authorization header's value: a token for ``subject``."""
    return f"Bearer {token(subject, role, ttl=ttl)}"


def new_user() -> str:
    return f"user-{uuid.uuid4()}"


@dataclass
class Client:
    """POST /graphql as a client would, to whichever server ``http``'s base URL names."""

    http: httpx.AsyncClient

    @property
    def url(self) -> str:
        return str(self.http.base_url).rstrip("/")

    async def request(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        auth: str | None,
        operation_name: str | None = None,
        headers: dict[str, str] | None = None,
        **options: Any,
    ) -> httpx.Response:
        """The HTTP response, whatever it is; ``auth`` is a raw token or None, ``headers`` go on
        top (an ``Authorization`` there replaces the one ``auth`` makes), and ``options`` are
        httpx's (a ``timeout``, say)."""
        sent = {} if auth is None else {"Authorization": f"Bearer {auth}"}
        body: dict[str, Any] = {"query": query, "variables": variables or {}}
        if operation_name is not None:
            body["operationName"] = operation_name
        return await self.http.post(
            "/graphql",
            json=body,
            headers=sent | (headers or {}),
            **options,
        )

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, auth: str | None
    ) -> dict[str, Any]:
        """The GraphQL response body; ``auth`` is a raw token or None."""
        response = await self.request(query, variables, auth=auth)
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


@dataclass
class Api(Client):
    """A client of a Storyline served in this process, which a test may also look inside."""

    app: Starlette

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services


@asynccontextmanager
async def client(url: str) -> AsyncIterator[Client]:
    """A client of the server at ``url`` (another process, say)."""
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=LIMITS) as http:
        yield Client(http)


PROJECT_SELECTION = """
    id externalId status creditsUsed errorMessage progress stage resultUrl
    prompt quality aspectRatio version createdAt updatedAt
"""
GENERATE = f"""
mutation Generate($input: GenerateStoryInput!) {{
  generateStory(input: $input) {{ {PROJECT_SELECTION} }}
}}
"""
REPORT = f"""
mutation Report($input: UpdateStatusInput!) {{
  updateStatus(input: $input) {{ {PROJECT_SELECTION} }}
}}
"""
GRANT = """
mutation Grant($userId: ID!, $amount: Int!, $reason: String!) {
  grantCredits(userId: $userId, amount: $amount, reason: $reason) { userId balance }
}
"""
