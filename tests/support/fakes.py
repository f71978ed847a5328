"""A video service whose answer each test picks through a tag in its prompt."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.support.client import Api


def video_service(
    create: Callable[[Request], Awaitable[Response]],
    read: Callable[[Request], Awaitable[Response]],
) -> Starlette:
    """The two routes of the video service's API (runtime.md): create a job, read one."""
    return Starlette(
        routes=[
            Route("/api/v1/project/video", create, methods=["POST"]),
            Route("/api/v1/project/{job_id}", read, methods=["GET"]),
        ]
    )


@dataclass
class Call:
    authorization: str | None
    body: dict[str, Any]
    traceparent: str | None = None


@dataclass
class FakeVideoService:
    """Tags: [422] [500] [malformed] [no-id] [hang] [slow] [complete-first] [fail-first],
    [gated] (accepts once the test sets ``gate``), and [id:X] to answer the job id X;
    without one it accepts at once."""

    hang_seconds: float = 3.0
    calls: list[Call] = field(default_factory=list)
    api: Api | None = None
    # What GET /api/v1/project/{id} answers: the job's task statuses, or absent for 404.
    jobs: dict[str, list[str]] = field(default_factory=dict)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def app(self) -> Starlette:
        return video_service(self._create, self._read)

    async def _read(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        if job_id not in self.jobs:
            return JSONResponse({"detail": "not found"}, status_code=404)
        tasks = [{"name": f"task-{n}", "status": s} for n, s in enumerate(self.jobs[job_id])]
        return JSONResponse({"id": job_id, "tasks": tasks, "result_url": "https://cdn/r.mp4"})

    def calls_for(self, project_id: str) -> list[Call]:
        return [c for c in self.calls if c.body["metadata"]["storyline_project_id"] == project_id]

    async def _create(self, request: Request) -> Response:
        body = await request.json()
        headers = request.headers
        self.calls.append(Call(headers.get("authorization"), body, headers.get("traceparent")))
        prompt: str = body["config"]["prompt"]
        project_id = body["metadata"]["storyline_project_id"]
        given = re.search(r"\[id:([^\]]+)\]", prompt)
        external_id = given[1] if given else f"ext-{uuid.uuid4()}"
        if "[422]" in prompt:
            return JSONResponse({"detail": "prompt refused"}, status_code=422)
        if "[500]" in prompt:
            return PlainTextResponse("boom", status_code=500)
        if "[malformed]" in prompt:
            return PlainTextResponse("<html>not json</html>", status_code=200)
        if "[no-id]" in prompt:
            return JSONResponse({"status": "ok"}, status_code=201)
        if "[hang]" in prompt:
            await asyncio.sleep(self.hang_seconds)
        if "[gated]" in prompt:
            await self.gate.wait()
        if "[slow]" in prompt:  # slow, but within Storyline's timeout
            await asyncio.sleep(0.5)
        if "[complete-first]" in prompt or "[fail-first]" in prompt:
            # The pipeline finishes before Storyline has heard back from the service.
            assert self.api is not None
            status = "COMPLETED" if "[complete-first]" in prompt else "FAILED"
            answer = await self.api.report(
                projectId=project_id, status=status, resultUrl="https://cdn.example/v.mp4"
            )
            assert "errors" not in answer, answer
        return JSONResponse({"id": external_id, "status": "created"}, status_code=201)
