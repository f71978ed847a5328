"""OpenTelemetry: a trace per operation, with its SQL and its video service call, one trace
from generateStory to the pipeline's reports, and nothing at all unless OTEL_* asks."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import asyncpg
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from storyline import telemetry
from storyline.auth import Role
from storyline.telemetry.tracing import OperationTraces, TraceContext, Tracing
from storyline_pipeline.reports import Endpoint, asend_report, report_input
from tests.support import REPORT, UPSTREAM_TOKEN, Api, new_user, storyline, token
from tests.support.fakes import FakeVideoService
from tests.support.watch import LEGACY_WS, TRANSPORT_WS, connected, next_event, start

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
PROMPT = "A lighthouse keeper's diary, private-prompt-text"
WATCH = "GraphQL Query: Watch"  # the subscription tests.support.watch.start sends


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def recording(exported: InMemorySpanExporter) -> Tracing:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    return Tracing(provider)


@pytest.fixture
async def traced(
    database_url: str,
    fake_upstream: tuple[FakeVideoService, str],
    exported: InMemorySpanExporter,
) -> AsyncIterator[Api]:
    """Storyline in front of the fake video service, its spans kept in ``exported``."""
    async with storyline(
        database_url,
        tracing=recording(exported),
        upstream_url=fake_upstream[1],
        upstream_token=UPSTREAM_TOKEN,
    ) as api:
        yield api


def in_trace(exported: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in exported.get_finished_spans() if s.context.trace_id == trace_id]


def named(spans: Iterable[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def ancestors(span: ReadableSpan, spans: Iterable[ReadableSpan]) -> list[ReadableSpan]:
    """The span's parent, its parent's, and so on, among ``spans``."""
    by_id = {other.context.span_id: other for other in spans}
    found = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        found.append(span)
    return found


async def finished(
    exported: InMemorySpanExporter, ready: Callable[[], bool], *, within: float
) -> None:
    """Wait (polling) until ``ready()``: spans end as the server gets to them."""
    for _ in range(int(within / 0.02)):
        if ready():
            return
        await asyncio.sleep(0.02)
    assert ready(), [span.name for span in exported.get_finished_spans()]


def statements(spans: Iterable[ReadableSpan]) -> list[ReadableSpan]:
    """asyncpg's spans."""
    return [s for s in spans if (s.attributes or {}).get("db.system") == "postgresql"]


async def generate_traced(api: Api, fake: FakeVideoService) -> tuple[str, str, int, int]:
    """A generateStory: its project id, the traceparent the video service received, and
    that header's trace and span ids."""
    body = await api.generate(new_user(), prompt=PROMPT)
    project_id = body["data"]["generateStory"]["id"]
    [call] = fake.calls_for(project_id)
    assert call.traceparent is not None
    sent = TRACEPARENT.fullmatch(call.traceparent)
    assert sent is not None, call.traceparent
    assert int(sent[3], 16) & 1, "sampled"
    return project_id, call.traceparent, int(sent[1], 16), int(sent[2], 16)


async def test_generate_story_sends_its_trace_to_the_video_service(
    traced: Api, fake: FakeVideoService, exported: InMemorySpanExporter
) -> None:
    _, _, trace_id, span_id = await generate_traced(traced, fake)

    spans = in_trace(exported, trace_id)
    [operation] = named(spans, "GraphQL Query: Generate")
    assert operation.kind is SpanKind.SERVER
    assert operation.parent is None  # the client sent no trace context: a trace of its own
    [call] = [span for span in spans if span.context.span_id == span_id]
    assert (call.kind, call.name) == (SpanKind.CLIENT, "POST")
    assert operation in ancestors(call, spans)
    sql = statements(spans)
    assert any("INSERT INTO projects" in str(s.attributes["db.statement"]) for s in sql)  # type: ignore[index]
    for statement in sql:
        assert operation in ancestors(statement, spans), statement.name


async def test_an_update_status_with_that_traceparent_joins_the_trace(
    traced: Api, fake: FakeVideoService, exported: InMemorySpanExporter
) -> None:
    project_id, traceparent, trace_id, span_id = await generate_traced(traced, fake)

    response = await traced.request(
        REPORT,
        {"input": {"projectId": project_id, "status": "PROCESSING", "progress": 15}},
        auth=token("pipeline", Role.PIPELINE),
        headers={"traceparent": traceparent},
    )
    assert "errors" not in response.json(), response.text

    spans = in_trace(exported, trace_id)
    [report] = named(spans, "GraphQL Query: Report")
    assert report.parent is not None
    assert report.parent.is_remote
    assert report.parent.span_id == span_id  # the video service call's span
    [generate] = named(spans, "GraphQL Query: Generate")
    assert generate in ancestors(report, spans)
    sql = statements(spans)
    assert any(report in ancestors(statement, spans) for statement in sql)


async def test_the_pipeline_clients_reports_join_the_trace_of_their_job(
    traced: Api,
    fake: FakeVideoService,
    exported: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project_id, traceparent, trace_id, span_id = await generate_traced(traced, fake)
    # The job's trace context, as a pipeline worker receives it with the job.
    monkeypatch.setenv("TRACEPARENT", traceparent)
    endpoint = Endpoint.resolve(f"{traced.url}/graphql", token("pipeline", Role.PIPELINE))
    report = report_input(status="PROCESSING", project_id=project_id, progress=20)
    await asend_report(endpoint, report)

    [sent] = named(in_trace(exported, trace_id), "GraphQL Query: Report")
    assert sent.parent is not None
    assert sent.parent.span_id == span_id


async def test_spans_record_no_token_prompt_or_free_text(
    traced: Api, fake: FakeVideoService, exported: InMemorySpanExporter
) -> None:
    user = new_user()
    user_token, pipeline_token = token(user), token("pipeline", Role.PIPELINE)
    body = await traced.post(
        "mutation Generate($input: GenerateStoryInput!) { generateStory(input: $input) { id } }",
        {"input": {"prompt": PROMPT, "idempotencyKey": "client-key-77", "quality": "SD"}},
        auth=user_token,
    )
    project_id = body["data"]["generateStory"]["id"]
    report = {
        "projectId": project_id,
        "status": "COMPLETED",
        "resultUrl": "https://cdn.example/v.mp4?signature=signed-url-secret",
    }
    await traced.post(REPORT, {"input": report}, auth=pipeline_token)

    recorded = " ".join(
        f"{name}={value!r}"
        for span in exported.get_finished_spans()
        for name, value in (span.attributes or {}).items()
    )
    for secret in (
        user_token,
        pipeline_token,
        UPSTREAM_TOKEN,
        "Bearer",
        "private-prompt-text",
        "client-key-77",
        "signed-url-secret",
    ):
        assert secret not in recorded
    # What is recorded of the arguments: ids and enums.
    assert f"projectId: {project_id}" in recorded
    assert "status: COMPLETED" in recorded
    assert "quality: SD" in recorded


async def test_the_simulator_carries_the_trace_from_the_job_to_its_reports(
    database_url: str, exported: InMemorySpanExporter
) -> None:
    """As ``make run`` serves it: the built-in simulator plays the service and pipeline."""
    async with storyline(
        database_url,
        tracing=recording(exported),
        upstream_token=UPSTREAM_TOKEN,
        simulator_step_seconds=0.01,
    ) as api:
        user = new_user()
        body = await api.generate(user, prompt=PROMPT)
        [generate] = named(exported.get_finished_spans(), "GraphQL Query: Generate")
        trace_id = generate.context.trace_id
        project_id = body["data"]["generateStory"]["id"]

        def reports() -> list[ReadableSpan]:
            return named(in_trace(exported, trace_id), "GraphQL Query: Report")

        await finished(exported, lambda: len(reports()) == 5, within=10)  # 4 stages, COMPLETED
        project = await api.data(
            "query($id: ID!) { project(id: $id) { status } }", {"id": project_id}, auth=token(user)
        )
    assert project == {"project": {"status": "COMPLETED"}}
    spans = in_trace(exported, trace_id)
    assert all(generate in ancestors(report, spans) for report in reports())


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_subscription_gets_one_span_and_none_per_event(
    traced: Api, fake: FakeVideoService, exported: InMemorySpanExporter, protocol: str
) -> None:
    """graphql-transport-ws serves projectStatus on the fan-out path (a span when it starts),
    graphql-ws on strawberry's (a span as long as the subscription)."""
    user = new_user()
    project_id = (await traced.generate(user))["data"]["generateStory"]["id"]
    async with connected(traced.url, token(user), protocol) as ws:
        await start(ws, project_id)
        await next_event(ws, within=5)  # the current state
        for progress in (15, 40):
            await traced.report(projectId=project_id, status="PROCESSING", progress=progress)
            await next_event(ws, within=5)
    # strawberry's span ends once the server has seen the socket close
    await finished(exported, lambda: bool(named(exported.get_finished_spans(), WATCH)), within=5)
    spans = exported.get_finished_spans()
    [watch] = named(spans, WATCH)
    assert watch.kind is SpanKind.SERVER
    below = [span for span in spans if watch in ancestors(span, spans)]
    assert {span.name for span in below} <= {"GraphQL Parsing", "GraphQL Validation"}


@pytest.mark.parametrize(
    ("variables", "exporters"),
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "storyline", "OTEL_TRACES_SAMPLER": "always_on"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, []),
    ],
)
def test_tracing_is_on_only_when_the_variables_ask(
    variables: dict[str, str], exporters: list[str]
) -> None:
    assert telemetry.exporter_names(variables) == exporters


def test_variables_it_cannot_serve_are_named() -> None:
    assert telemetry.configuration_error({"OTEL_TRACES_EXPORTER": "zipkin"}) == (
        "OTEL_TRACES_EXPORTER: zipkin is not one of otlp, console, none"
    )
    grpc = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert telemetry.configuration_error(grpc) == (
        "OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported"
    )
    with pytest.raises(ValueError, match="zipkin"):
        telemetry.from_environment({"OTEL_TRACES_EXPORTER": "zipkin"})
    tracing = telemetry.from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert tracing is not None
    tracing.close()


def test_serve_refuses_tracing_variables_it_cannot_serve(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("STORYLINE_")}
    env["OTEL_TRACES_EXPORTER"] = "zipkin"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "storyline"), "serve", "--no-migrate"],
        env=env | {"STORYLINE_DATA_DIR": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "OTEL_TRACES_EXPORTER: zipkin is not one of" in result.stderr


async def test_without_otel_variables_nothing_is_traced(
    api: Api, fake: FakeVideoService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``api`` is built as ``storyline serve`` builds its app when from_environment() is None."""
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    assert telemetry.from_environment() is None

    schema = api.app.graphql.schema  # type: ignore[attr-defined]
    assert not [ext for ext in schema.get_extensions() if isinstance(ext, OperationTraces)]
    middleware: list[object] = [m.cls for m in api.app.user_middleware]
    assert TraceContext not in middleware
    assert not hasattr(asyncpg.Connection.fetch, "__wrapped__")  # no asyncpg instrumentation
    project_id = (await api.generate(new_user()))["data"]["generateStory"]["id"]
    [call] = fake.calls_for(project_id)
    assert call.traceparent is None
