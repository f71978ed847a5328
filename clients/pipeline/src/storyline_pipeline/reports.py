"""One report to Storyline's ``updateStatus`` over HTTP, and what its answer means.

No Prefect here: storyline_pipeline.prefect builds its task and hooks on these.

Configuration comes from arguments or the environment: ``STORYLINE_URL`` (the GraphQL
endpoint, e.g. ``https://storyline.example/graphql``) and ``STORYLINE_PIPELINE_TOKEN``
(a JWT of role ``pipeline``). The token is sent only in the Authorization header: it
is never logged, never part of an exception message, and not a repr'd field.

Against a Storyline that runs trusted documents only, set ``STORYLINE_PERSISTED_DOCUMENTS=1``
(or pass ``persisted=True``): reports then name their document by its hash (``documentId``)
instead of sending its text. ``DOCUMENTS`` is every document this client sends; the
server's ``storyline trusted-documents write`` finds it through this distribution's entry
point ``storyline.trusted_documents``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import httpx

URL_ENV = "STORYLINE_URL"
TOKEN_ENV = "STORYLINE_PIPELINE_TOKEN"  # noqa: S105 (a variable name)
TRACEPARENT_ENV = "TRACEPARENT"  # the W3C trace context of the job, if it has one
TRACESTATE_ENV = "TRACESTATE"
PERSISTED_ENV = "STORYLINE_PERSISTED_DOCUMENTS"

# The contract's ProjectStatus (the client's tests hold them equal): this module runs in
# the pipeline's process and needs nothing of Storyline but its HTTP endpoint.
StatusName = Literal["PENDING", "PROCESSING", "COMPLETED", "FAILED"]
STATUSES: frozenset[str] = frozenset(get_args(StatusName))

REPORT = """
mutation Report($input: UpdateStatusInput!) {
  updateStatus(input: $input) { id externalId status version progress stage }
}
"""
# Every document this client sends, by operation name (a stable interface: see above).
DOCUMENTS = {"Report": REPORT}
# A persisted document's id: sha256 of its exact UTF-8 text, lowercase hex.
REPORT_ID = "sha256:" + hashlib.sha256(REPORT.encode("utf-8")).hexdigest()
# Storyline keeps the error message for the user to read; a traceback is not for them.
MAX_ERROR_MESSAGE = 1000
# HTTP answers that say "not now" rather than "no".
TRANSIENT_HTTP = frozenset({408, 425, 429})

DEFAULT_RETRIES = 8
DEFAULT_FIRST_DELAY = 1.0
DEFAULT_MAX_DELAY = 60.0
DEFAULT_JITTER = 0.5
DEFAULT_TIMEOUT = 10.0


class ReportError(Exception):
    """A report that did not land."""


class StorylineUnavailable(ReportError):
    """Transient: no answer, a timeout, a 5xx (or 408/429) or an internal error. Retried."""


class ReportRejected(ReportError):
    """Final: Storyline answered and refused the report (e.g. INVALID_TRANSITION)."""

    def __init__(self, message: str, *, code: str | None, http_status: int) -> None:
        super().__init__(f"{code or f'HTTP {http_status}'}: {message}")
        self.code = code
        self.http_status = http_status


class StorylineNotConfigured(ReportError):
    """Final: no URL or no token, neither passed nor in the environment."""


@dataclass(frozen=True)
class Endpoint:
    """Storyline's GraphQL endpoint: where to report, with which pipeline token (kept out of
    repr), and whether documents are named by hash (``persisted``). ``traceparent`` and
    ``tracestate``: the W3C trace context of the job, as the video service received it when
    Storyline created the job; sent with every report, so that Storyline's trace of
    generateStory holds the reports too (none: none sent)."""

    url: str
    token: str = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    traceparent: str | None = None
    tracestate: str | None = None
    persisted: bool = False

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        traceparent: str | None = None,
        tracestate: str | None = None,
        persisted: bool | None = None,
    ) -> Endpoint:
        """From the arguments, or else the environment: STORYLINE_URL, STORYLINE_PIPELINE_TOKEN,
        STORYLINE_PERSISTED_DOCUMENTS, and the trace context in TRACEPARENT and TRACESTATE
        (OpenTelemetry's names for a trace context carried in the environment)."""
        if persisted is None:
            persisted = os.environ.get(PERSISTED_ENV, "").lower() in ("1", "true", "yes")
        url = url or os.environ.get(URL_ENV)
        token = token or os.environ.get(TOKEN_ENV)
        missing = [name for name, value in ((URL_ENV, url), (TOKEN_ENV, token)) if not value]
        if not url or not token:
            raise StorylineNotConfigured(
                f"Storyline reporting is not configured: set {' and '.join(missing)}"
                " or pass url= and token=."
            )
        traceparent = traceparent or os.environ.get(TRACEPARENT_ENV) or None
        tracestate = tracestate or os.environ.get(TRACESTATE_ENV) or None
        return cls(url, token, timeout, traceparent, tracestate, persisted)

    def request(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.traceparent:
            headers["traceparent"] = self.traceparent
            if self.tracestate:
                headers["tracestate"] = self.tracestate
        return {
            "url": self.url,
            "json": {
                **({"documentId": REPORT_ID} if self.persisted else {"query": REPORT}),
                "variables": dict(variables),
            },
            "headers": headers,
        }


def report_input(
    *,
    status: str,
    project_id: str | None = None,
    external_id: str | None = None,
    progress: int | None = None,
    stage: str | None = None,
    error_message: str | None = None,
    result_url: str | None = None,
) -> dict[str, Any]:
    """The ``UpdateStatusInput``; raises ValueError (final) for a report that cannot be sent."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {sorted(STATUSES)}, not {status!r}")
    if (project_id is None) == (external_id is None):
        raise ValueError("name the project by exactly one of project_id and external_id")
    if error_message is not None and len(error_message) > MAX_ERROR_MESSAGE:
        error_message = error_message[: MAX_ERROR_MESSAGE - 1] + "…"
    fields = {
        "projectId": project_id,
        "externalId": external_id,
        "status": status,
        "progress": progress,
        "stage": stage,
        "errorMessage": error_message,
        "resultUrl": result_url,
    }
    return {key: value for key, value in fields.items() if value is not None}


def interpret(response: httpx.Response) -> dict[str, Any]:
    """The reported project, or the error that says whether to try again."""
    code = response.status_code
    if code >= 500 or code in TRANSIENT_HTTP:
        raise StorylineUnavailable(f"Storyline answered HTTP {code}")
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        if response.is_success:
            # Something other than Storyline answered (a proxy's page): not a refusal.
            raise StorylineUnavailable(f"Storyline answered HTTP {code} without a GraphQL body")
        raise ReportRejected("not a GraphQL answer", code=None, http_status=code)
    errors = body.get("errors")
    if errors:
        first = errors[0] if isinstance(errors, list) and isinstance(errors[0], dict) else {}
        extensions = first.get("extensions")
        error_code = extensions.get("code") if isinstance(extensions, dict) else None
        message = str(first.get("message", "unknown error"))
        if error_code == "INTERNAL_SERVER_ERROR":
            raise StorylineUnavailable(f"Storyline answered INTERNAL_SERVER_ERROR: {message}")
        raise ReportRejected(message, code=error_code, http_status=code)
    data = body.get("data")
    project = data.get("updateStatus") if isinstance(data, dict) else None
    if not isinstance(project, dict):
        raise StorylineUnavailable(f"Storyline answered HTTP {code} without a project")
    return project


def send_report(endpoint: Endpoint, report: Mapping[str, Any]) -> dict[str, Any]:
    """One attempt, blocking. Raises StorylineUnavailable or ReportRejected."""
    try:
        with httpx.Client(timeout=endpoint.timeout) as client:
            response = client.post(**endpoint.request({"input": report}))
    except httpx.TransportError as exc:
        # The class name only: an exception's text may quote the request.
        raise StorylineUnavailable(f"Storyline unreachable ({type(exc).__name__})") from None
    return _early(report, response)


def _early(report: Mapping[str, Any], response: httpx.Response) -> dict[str, Any]:
    """interpret(), but an upstream id Storyline does not know yet is worth another try:
    a report may arrive before generateStory has recorded the id."""
    try:
        return interpret(response)
    except ReportRejected as rejected:
        if rejected.code == "NOT_FOUND" and "externalId" in report:
            raise StorylineUnavailable("the externalId is not known yet") from None
        raise


async def asend_report(endpoint: Endpoint, report: Mapping[str, Any]) -> dict[str, Any]:
    """One attempt, awaitable. Raises StorylineUnavailable or ReportRejected."""
    try:
        async with httpx.AsyncClient(timeout=endpoint.timeout) as client:
            response = await client.post(**endpoint.request({"input": report}))
    except httpx.TransportError as exc:
        raise StorylineUnavailable(f"Storyline unreachable ({type(exc).__name__})") from None
    return _early(report, response)


def backoff(
    first: float = DEFAULT_FIRST_DELAY,
    *,
    retries: int = DEFAULT_RETRIES,
    cap: float = DEFAULT_MAX_DELAY,
) -> list[float]:
    """Delays before each retry: first, 2x, 4x, ... at most ``cap`` (Prefect adds the jitter)."""
    return [min(first * 2**attempt, cap) for attempt in range(retries)]
