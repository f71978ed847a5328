"""The harness's video service (the API of runtime.md's "upstream video service", as
storyline/upstream/client.py calls it) and the pipeline behind it, which reports back
through ``updateStatus`` the way a real one may: late, twice, out of order.

While a fault is on, a fraction of the calls get it: ``5xx`` (an error status),
``malformed`` (a 2xx whose body has no usable id) or ``timeout`` (an answer long after
Storyline gave up; half of those jobs were created all the same).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from tests.support.client import token
from tests.support.fakes import video_service

from chaos.client import DROPPED, TIMEOUT, UNREACHABLE, Api
from chaos.record import Recorder
from storyline.auth import Role

FAULTED_SHARE = 0.6  # of the calls made while a fault is on
REPORT = """
mutation Report($input: UpdateStatusInput!) { updateStatus(input: $input) { id status version } }
"""
STAGES = (("script", 15), ("entities", 40), ("storyboard", 65), ("render", 90))
# Outcomes the pipeline retries, as a real one does: the report may not have been applied.
RETRIED = (TIMEOUT, DROPPED, UNREACHABLE, "INTERNAL_SERVER_ERROR")
# A late report after the end is refused; transport failures are retried.
EXPECTED = ("ok", "INVALID_TRANSITION", TIMEOUT, DROPPED, UNREACHABLE)


class Pipeline:
    def __init__(self, api: Api, recorder: Recorder, rng: random.Random) -> None:
        self.api = api
        self.recorder = recorder
        self.rng = rng
        self.token = token("chaos-pipeline", Role.PIPELINE)
        self.jobs: dict[str, list[str]] = {}  # external id -> its tasks' statuses
        self.runs: set[asyncio.Task[None]] = set()

    def start(self, project_id: str) -> str:
        external_id = f"job-{uuid.uuid4()}"
        self.jobs[external_id] = ["in_progress"] * len(STAGES)
        run = asyncio.create_task(self._run(project_id, external_id))
        self.runs.add(run)
        run.add_done_callback(self.runs.discard)
        return external_id

    async def stop(self) -> None:
        for run in list(self.runs):
            run.cancel()
        await asyncio.gather(*self.runs, return_exceptions=True)

    async def _run(self, project_id: str, external_id: str) -> None:
        rng = self.rng
        if rng.random() < 0.05:
            return  # a pipeline that never reports: the sweeper's to settle
        tasks = self.jobs[external_id]
        steps: list[dict[str, object]] = [
            {"status": "PROCESSING", "progress": progress, "stage": stage}
            for stage, progress in STAGES
        ]
        if rng.random() < 0.3:  # two reports overtake each other
            at = rng.randrange(len(steps) - 1)
            steps[at], steps[at + 1] = steps[at + 1], steps[at]
        for number, step in enumerate(steps):
            await asyncio.sleep(rng.uniform(0.2, 0.8))
            await self._send(project_id, step, twice=rng.random() < 0.15)
            tasks[number] = "completed"
        await asyncio.sleep(rng.uniform(0.2, 0.8))
        if rng.random() < 0.85:
            end: dict[str, object] = {
                "status": "COMPLETED",
                "resultUrl": f"https://cdn/{project_id}",
            }
        else:
            end = {"status": "FAILED", "errorMessage": "the render farm gave up"}
            tasks[-1] = "error"
        await self._send(project_id, end, twice=rng.random() < 0.3)
        if rng.random() < 0.3:  # a straggler, after the end
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            await self._send(project_id, {"status": "PROCESSING", "progress": 50}, twice=False)

    async def _send(self, project_id: str, fields: dict[str, object], *, twice: bool) -> None:
        report = {"projectId": project_id, **fields}
        await asyncio.gather(*(self._report(report) for _ in range(2 if twice else 1)))

    async def _report(self, report: dict[str, object]) -> None:
        for attempt in range(6):
            if attempt:
                await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
            answer = await self.api.call(REPORT, {"input": report}, token=self.token, patience=3.0)
            detail = "" if answer.outcome in EXPECTED else answer.detail or answer.outcome
            self.recorder.operation(
                "updateStatus", answer.outcome, detail=detail, request_id=answer.request_id
            )
            if answer.outcome not in RETRIED:
                break
        if answer.data is not None:
            made = answer.data["updateStatus"]
            self.recorder.made(made["id"], made["version"], answer.sent)


class VideoService:
    def __init__(self, pipeline: Pipeline, rng: random.Random, *, hang: float) -> None:
        self.pipeline = pipeline
        self.rng = rng
        self.hang = hang
        self.faults: set[str] = set()  # "5xx", "malformed", "timeout"
        self.answered: Counter[str] = Counter()  # by call and fault

    @property
    def app(self) -> Starlette:
        return video_service(self._create, self._read)

    def _fault(self) -> str | None:
        if self.faults and self.rng.random() < FAULTED_SHARE:
            return self.rng.choice(sorted(self.faults))
        return None

    async def _create(self, request: Request) -> Response:
        body = await request.json()
        project_id = body["metadata"]["storyline_project_id"]
        fault = self._fault()
        self.answered[f"create {fault or 'ok'}"] += 1
        if fault == "5xx":
            return PlainTextResponse("unavailable", status_code=self.rng.choice([500, 502, 503]))
        if fault == "malformed":
            return self.rng.choice(
                [
                    PlainTextResponse("<html>Bad gateway</html>", status_code=200),
                    JSONResponse({"status": "created"}, status_code=201),
                    JSONResponse({"id": ""}, status_code=201),
                ]
            )
        if fault == "timeout":
            await asyncio.sleep(self.hang)
            if self.rng.random() < 0.5:
                return PlainTextResponse("gateway timeout", status_code=504)
        return JSONResponse({"id": self.pipeline.start(project_id)}, status_code=201)

    async def _read(self, request: Request) -> Response:
        fault = self._fault()
        self.answered[f"read {fault or 'ok'}"] += 1
        if fault == "5xx":
            return PlainTextResponse("unavailable", status_code=503)
        if fault == "malformed":
            return PlainTextResponse("<html>Bad gateway</html>", status_code=200)
        if fault == "timeout":
            await asyncio.sleep(self.hang)
        job_id = request.path_params["job_id"]
        tasks = self.pipeline.jobs.get(job_id)
        if tasks is None:
            return JSONResponse({"detail": "not found"}, status_code=404)
        listed = [{"name": f"task-{n}", "status": status} for n, status in enumerate(tasks)]
        return JSONResponse({"id": job_id, "tasks": listed, "result_url": "https://cdn/r.mp4"})
