"""Report a Prefect 3 flow's progress and outcome to Storyline's ``updateStatus``.

Three layers, by how much they can be relied on:

1. ``report_status``, a task the flow calls after each stage and at the end: retried
   by Prefect with exponential backoff and jitter while Storyline is unreachable or
   answers 5xx. This is the primary path.
2. ``ReportingHooks``, flow state hooks (``on_completion``, ``on_failure``,
   ``on_crashed``, ``on_cancellation``) that report the outcome. Prefect runs them in
   the flow's own process, once, after the final state is set: a killed process or
   a lost machine runs none of them. Best effort, with a few quick retries.
3. Storyline's sweeper fails and refunds a PROCESSING project that has had no report
   for ``STORYLINE_PROCESSING_TIMEOUT``: the backstop when both of the above are lost.

Reports are safe to repeat: a terminal project's own status is accepted and changes
nothing, so the hook's COMPLETED after the task's COMPLETED is harmless. A report
that Storyline refuses (``INVALID_TRANSITION`` and every other GraphQL error but
``INTERNAL_SERVER_ERROR``) is final and never retried.

Configuration and the HTTP side of a report: storyline_pipeline.reports.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from prefect import Flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun, State, TaskRun
from prefect.exceptions import MissingContextError
from prefect.flows import FlowStateHook
from prefect.logging import get_run_logger
from prefect.logging.loggers import LoggingAdapter
from prefect.tasks import Task

from storyline_pipeline.reports import (
    DEFAULT_JITTER,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    TOKEN_ENV,
    URL_ENV,
    Endpoint,
    ReportError,
    ReportRejected,
    StatusName,
    StorylineNotConfigured,
    StorylineUnavailable,
    asend_report,
    backoff,
    interpret,
    report_input,
    send_report,
)

# Re-exported: flows import everything from here.
__all__ = [
    "DEFAULT_JITTER",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "TOKEN_ENV",
    "URL_ENV",
    "Endpoint",
    "ReportError",
    "ReportRejected",
    "StatusName",
    "StorylineNotConfigured",
    "StorylineUnavailable",
    "asend_report",
    "backoff",
    "interpret",
    "report_input",
    "send_report",
]

log = logging.getLogger(__name__)


def run_logger() -> logging.Logger | LoggingAdapter:
    """The Prefect run logger (shown in the Prefect UI) inside a run, else this module's."""
    try:
        return get_run_logger()
    except MissingContextError:
        return log


async def retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's retry condition: retry StorylineUnavailable, nothing else."""
    error = state.data
    if not isinstance(error, BaseException):
        error = await state.aresult(raise_on_failure=False, retry_result_failure=False)
    return isinstance(error, StorylineUnavailable)


@task(
    name="storyline-report-status",
    task_run_name="report-{status}",
    retries=DEFAULT_RETRIES,
    retry_delay_seconds=backoff(),
    retry_jitter_factor=DEFAULT_JITTER,
    retry_condition_fn=retry_if_transient,
    # Two identical reports are two reports: never answer one from a cache.
    cache_policy=NO_CACHE,
    persist_result=False,
)
def report_status(
    project_id: str | None,
    status: StatusName,
    *,
    progress: int | None = None,
    stage: str | None = None,
    error_message: str | None = None,
    result_url: str | None = None,
    external_id: str | None = None,
    url: str | None = None,
    token: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Report to Storyline; returns the project as Storyline now has it.

    Retried (8 times by default, 1 s doubling up to 60 s, with jitter) when Storyline
    is unreachable, times out or answers 5xx; a refusal (ReportRejected, e.g.
    INVALID_TRANSITION after the sweeper failed the project) fails the task at once.
    Change the policy per call site with ``report_status.with_options(retries=...,
    retry_delay_seconds=backoff(...))``. Pass the token through the environment, not
    as a flow parameter: flow parameters are stored by the Prefect API.
    """
    report = report_input(
        status=status,
        project_id=project_id,
        external_id=external_id,
        progress=progress,
        stage=stage,
        error_message=error_message,
        result_url=result_url,
    )
    endpoint = Endpoint.resolve(url, token, timeout=timeout)
    project = send_report(endpoint, report)
    run_logger().info(
        "Storyline project %s is %s (version %s)",
        project.get("id"),
        project.get("status"),
        project.get("version"),
    )
    return project


class FlowHooks(TypedDict):
    """Keyword arguments for ``@flow(...)``: ``@flow(**ReportingHooks().flow_options())``."""

    on_completion: list[FlowStateHook[..., Any]]
    on_failure: list[FlowStateHook[..., Any]]
    on_crashed: list[FlowStateHook[..., Any]]
    on_cancellation: list[FlowStateHook[..., Any]]


@dataclass(frozen=True)
class ReportingHooks:
    """Flow state hooks that report the flow run's outcome to Storyline. Best effort.

    The project comes from the flow run's parameters: ``project_param`` (a Storyline
    project id) or else ``external_param`` (the video service's id). The endpoint is
    ``url``, else the flow run's ``url_param`` parameter, else ``STORYLINE_URL``; the
    token is ``token``, else ``STORYLINE_PIPELINE_TOKEN``.
    """

    url: str | None = None
    token: str | None = field(default=None, repr=False)
    project_param: str = "project_id"
    external_param: str = "external_id"
    # A flow-run parameter that may name Storyline's URL. None (the default): only ``url``
    # or STORYLINE_URL, so that whoever can start a flow run cannot send the pipeline
    # token elsewhere.
    url_param: str | None = None
    attempts: int = 4
    first_delay: float = 0.5
    max_delay: float = 5.0
    timeout: float = DEFAULT_TIMEOUT

    def flow_options(self) -> FlowHooks:
        return FlowHooks(
            on_completion=[self.on_completion],
            on_failure=[self.on_failure],
            on_crashed=[self.on_crashed],
            on_cancellation=[self.on_cancellation],
        )

    async def on_completion(self, flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
        """COMPLETED, with the result URL if the flow returned one."""
        try:
            value = await state.aresult(raise_on_failure=False, retry_result_failure=False)
        except Exception:  # the result may live in storage this process cannot read
            value = None
        await self.report(
            flow_run, status="COMPLETED", progress=100, result_url=result_url_of(value)
        )

    async def on_failure(self, flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
        """FAILED, with the exception's message (the user reads it), else the state's."""
        try:
            error = await state.aresult(raise_on_failure=False, retry_result_failure=False)
        except Exception:
            error = None
        message = str(error) if isinstance(error, BaseException) else ""
        await self.report(
            flow_run,
            status="FAILED",
            error_message=message or state.message or "The pipeline failed.",
        )

    async def on_crashed(self, flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
        message = f"The pipeline crashed: {state.message}" if state.message else None
        await self.report(
            flow_run, status="FAILED", error_message=message or "The pipeline crashed."
        )

    async def on_cancellation(self, flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
        await self.report(flow_run, status="FAILED", error_message="The pipeline was cancelled.")

    async def report(
        self,
        flow_run: FlowRun,
        *,
        status: StatusName,
        progress: int | None = None,
        error_message: str | None = None,
        result_url: str | None = None,
    ) -> dict[str, Any] | None:
        """Report for this flow run, retrying a few times; never raises a ReportError."""
        logger = run_logger()
        parameters = flow_run.parameters or {}
        project_id = parameters.get(self.project_param)
        external_id = None if project_id else parameters.get(self.external_param)
        if not project_id and not external_id:
            logger.warning(
                "Flow run %s has no %r parameter: nothing to report to Storyline",
                flow_run.name,
                self.project_param,
            )
            return None
        try:
            endpoint = Endpoint.resolve(
                self.url or (parameters.get(self.url_param) if self.url_param else None),
                self.token,
                timeout=self.timeout,
            )
            report = report_input(
                status=status,
                project_id=str(project_id) if project_id else None,
                external_id=str(external_id) if external_id else None,
                progress=progress,
                error_message=error_message,
                result_url=result_url,
            )
        except (StorylineNotConfigured, ValueError) as exc:
            logger.error("Cannot report %s to Storyline: %s", status, exc)
            return None
        target = project_id or external_id
        for attempt in range(1, self.attempts + 1):
            try:
                project = await asend_report(endpoint, report)
            except StorylineUnavailable as exc:
                if attempt == self.attempts:
                    logger.error(
                        "Gave up reporting %s for project %s after %s attempts (%s);"
                        " Storyline's sweeper will resolve it",
                        status,
                        target,
                        attempt,
                        exc,
                    )
                    return None
                delay = min(self.first_delay * 2 ** (attempt - 1), self.max_delay)
                await asyncio.sleep(delay * random.uniform(1 - DEFAULT_JITTER, 1))
            except ReportRejected as exc:
                # INVALID_TRANSITION here usually means the flow already reported an
                # outcome (or the sweeper did): Storyline keeps the first one.
                logger.warning("Storyline refused %s for project %s: %s", status, target, exc)
                return None
            else:
                logger.info(
                    "Reported %s for project %s (version %s)",
                    status,
                    target,
                    project.get("version"),
                )
                return project
        return None


def result_url_of(value: object) -> str | None:
    """A flow's return value as a result URL: a URL string, or a mapping holding one."""
    if isinstance(value, Mapping):
        value = value.get("result_url", value.get("resultUrl"))
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        return value
    return None
