"""A stand-in for the video service and its Prefect pipeline.

It accepts jobs as the real service does and, like the real pipeline, reports back
through Storyline's ``updateStatus`` mutation over HTTP with a pipeline token:
PROCESSING with rising progress through the story stages, then COMPLETED with a
result URL (or FAILED, for a configurable fraction of jobs). It names its one document
(REPORT) by its text or, when told the server runs trusted documents only (``persisted``),
by its hash.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from storyline.graphql_http import document_id

log = logging.getLogger(__name__)

STAGES = (("script", 15), ("entities", 40), ("storyboard", 65), ("render", 90))
REPORT = """
mutation Report($input: UpdateStatusInput!) { updateStatus(input: $input) { status version } }
"""
REPORT_ATTEMPTS = 6
MAX_JOBS = 10_000
TRACE_CONTEXT = ("traceparent", "tracestate")  # W3C Trace Context's headers


@dataclass
class Job:
    id: str
    project_id: str
    stage_status: dict[str, str] = field(default_factory=dict)
    # The W3C trace context the job came with, sent back on each report, as the pipeline's
    # client does: the reports join the trace of the generateStory that created the job.
    trace_context: dict[str, str] = field(default_factory=dict)


class Simulator:
    def __init__(
        self,
        *,
        callback_url: str,
        token: str,
        pipeline_token: Callable[[], str],
        step_seconds: float,
        failure_rate: float,
        persisted: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        if not token:
            raise ValueError("the simulator needs a token to accept jobs with")
        self.callback_url = callback_url
        self._expected = f"Bearer {token}".encode()
        self.pipeline_token = pipeline_token
        self.step_seconds = step_seconds
        self.failure_rate = failure_rate
        self.document = {"documentId": document_id(REPORT)} if persisted else {"query": REPORT}
        self.jobs: dict[str, Job] = {}
        self._rng = rng or random.Random()
        self._runs: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient(timeout=10)
        self.app = Starlette(
            routes=[
                Route("/api/v1/project/video", self._create, methods=["POST"]),
                Route("/api/v1/project/{job_id}", self._read, methods=["GET"]),
            ]
        )

    async def aclose(self) -> None:
        for run in list(self._runs):
            run.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)
        await self._http.aclose()

    def _refused(self, request: Request) -> JSONResponse | None:
        """401 unless the caller sends the upstream token, as the video service requires: a
        job accepted from anyone would have the simulator report on any project."""
        sent = request.headers.get("authorization", "").encode()
        if secrets.compare_digest(sent, self._expected):
            return None
        return JSONResponse(
            {"detail": "a valid bearer token is required"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    async def _create(self, request: Request) -> JSONResponse:
        if refused := self._refused(request):
            return refused
        try:
            body = await request.json()
            project_id = str(body["metadata"]["storyline_project_id"])
            prompt = body["config"]["prompt"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"detail": "malformed job"}, status_code=422)
        if not isinstance(prompt, str) or not prompt:
            return JSONResponse({"detail": "config.prompt is required"}, status_code=422)
        trace_context = {
            name: request.headers[name] for name in TRACE_CONTEXT if name in request.headers
        }
        job = Job(id=f"sim-{uuid.uuid4()}", project_id=project_id, trace_context=trace_context)
        self.jobs[job.id] = job
        while len(self.jobs) > MAX_JOBS:  # a development stand-in: remember the recent ones
            del self.jobs[next(iter(self.jobs))]
        run = asyncio.create_task(self._run(job))
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)
        return JSONResponse({"id": job.id, "template_name": "story"}, status_code=201)

    async def _read(self, request: Request) -> JSONResponse:
        if refused := self._refused(request):
            return refused
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return JSONResponse({"detail": "not found"}, status_code=404)
        tasks = [
            {"name": name, "status": job.stage_status.get(name, "in_progress")}
            for name, _ in STAGES
        ]
        return JSONResponse({"id": job.id, "tasks": tasks})

    async def _run(self, job: Job) -> None:
        fails_at = (
            self._rng.randrange(len(STAGES)) if self._rng.random() < self.failure_rate else None
        )
        for index, (stage, progress) in enumerate(STAGES):
            await asyncio.sleep(self.step_seconds)
            if index == fails_at:
                job.stage_status[stage] = "error"
                await self._report(
                    job,
                    status="FAILED",
                    stage=stage,
                    errorMessage=f"The simulated pipeline failed at the {stage} stage.",
                )
                return
            await self._report(job, status="PROCESSING", progress=progress, stage=stage)
            job.stage_status[stage] = "completed"
        await asyncio.sleep(self.step_seconds)
        await self._report(
            job,
            status="COMPLETED",
            progress=100,
            stage="done",
            resultUrl=f"https://videos.storyline.invalid/{job.id}.mp4",
        )

    async def _report(self, job: Job, **fields: Any) -> None:
        """Report like a pipeline task: retried with backoff until Storyline answers."""
        variables = {"input": {"projectId": job.project_id, **fields}}
        for attempt in range(REPORT_ATTEMPTS):
            try:
                response = await self._http.post(
                    self.callback_url,
                    json={**self.document, "variables": variables},
                    headers={
                        "Authorization": f"Bearer {self.pipeline_token()}",
                        **job.trace_context,
                    },
                )
                if response.status_code < 500:
                    errors = response.json().get("errors")
                    if errors:
                        log.warning("simulator report refused: %s", errors[0].get("message"))
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(min(0.2 * 2**attempt, 5))
        log.error("simulator gave up reporting on project %s", job.project_id)
