"""/metrics moves with what happens; log lines are JSON and carry the request's ids."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from storyline.jobs.sweeper import sweep
from storyline.logs import JsonFormatter
from tests.support import Api, new_user, storyline, token
from tests.support.databases import migrated_database
from tests.support.fakes import FakeVideoService
from tests.support.watch import collect, connected, next_event, start


async def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await api.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_as_projects_are_made_failed_and_watched(
    server_url: str, fake_upstream: tuple[FakeVideoService, str]
) -> None:
    database_url = await migrated_database(server_url)
    async with storyline(
        database_url,
        upstream_url=fake_upstream[1],
        upstream_timeout=0.3,
        pending_timeout=0.4,
        sweep_interval=3600,
    ) as api:
        before = await scrape(api)
        user = new_user()
        project = (await api.generate(user))["data"]["generateStory"]
        refused = await api.generate(user, quality="SD", prompt="No [500]")
        assert refused["errors"][0]["extensions"]["code"] == "UPSTREAM_FAILED"
        stuck = (await api.generate(new_user(), prompt="Slow [hang]"))["data"]["generateStory"]
        assert stuck["status"] == "PENDING"

        async with connected(api.url, token(user)) as ws:
            await start(ws, project["id"])
            await asyncio.sleep(0.2)
            during = await scrape(api)
            await api.report(projectId=project["id"], status="COMPLETED")
            events = await asyncio.wait_for(collect(ws), 5)
        await asyncio.sleep(0.5)
        assert await sweep(api.services)
        after = await scrape(api)

    assert value(during, "storyline_websocket_connections") == 1
    assert value(during, "storyline_subscriptions") == 1
    assert value(after, "storyline_websocket_connections") == 0
    assert value(after, "storyline_subscriptions") == 0
    delivered = value(after, "storyline_events_delivered_total")
    assert delivered - value(before, "storyline_events_delivered_total") == len(events) == 2
    assert value(after, "storyline_credits_charged_total") == 60 + 40 + 60
    assert value(after, "storyline_credits_refunded_total") == 40 + 60
    assert value(after, "storyline_sweeper_actions_total", action="pending_to_failed") == 1
    ok = value(after, "storyline_graphql_requests_total", operation="generateStory", outcome="ok")
    failed = value(
        after,
        "storyline_graphql_requests_total",
        operation="generateStory",
        outcome="UPSTREAM_FAILED",
    )
    assert (ok, failed) == (2, 1)
    timed = value(
        after, "storyline_graphql_request_duration_seconds_count", operation="generateStory"
    )
    assert timed == 3
    assert value(after, "storyline_listener_reconnects") == 0


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


async def test_log_lines_are_json_with_request_user_project_and_operation(
    api: Api, json_lines: io.StringIO
) -> None:
    user = new_user()
    response = await api.request(
        'mutation { generateStory(input: {prompt: "Logged"}) { id } }',
        auth=token(user),
        headers={"X-Request-ID": "req-42"},
    )
    assert response.headers["x-request-id"] == "req-42"
    project_id = response.json()["data"]["generateStory"]["id"]
    await api.report(projectId=project_id, status="FAILED", errorMessage="logged failure")

    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    assert lines, "nothing was logged"
    charged = [line for line in lines if line["message"].startswith("charged")]
    assert charged == [
        charged[0]
        | {
            "request_id": "req-42",
            "user_id": user,
            "project_id": project_id,
            "operation": "generateStory",
            "level": "INFO",
        }
    ]
    moved = [line for line in lines if "-> FAILED" in line["message"]]
    assert len(moved) == 1
    assert moved[0]["operation"] == "updateStatus"
    assert moved[0]["user_id"] == "pipeline"
    assert moved[0]["project_id"] == project_id
    assert len(moved[0]["request_id"]) == 32  # generated, as the client sent none


async def test_clients_cannot_add_metric_series(api: Api) -> None:
    for n in range(20):
        await api.post(f"{{ field{n}_of_nobody }}", auth=None)
    families = [s for s in (await scrape(api)) if s[0] == "storyline_graphql_requests_total"]
    operations = {dict(labels)["operation"] for _, labels in families}
    assert not any(op.startswith("field") for op in operations)
    assert "invalid" in operations


async def test_the_task_gauge_counts_what_a_subscription_runs_and_returns_after_it(
    api: Api,
) -> None:
    """storyline_asyncio_tasks: what the chaos harness reads to tell leaked tasks. (This
    instance serves in the tests' loop, so the count includes the suite's own tasks: the
    test compares it with itself.)"""
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    # Settled first (as far as it settles): tasks an earlier test left winding down on
    # this worker's instance would end during this one and hide a task this one leaves.
    idle = value(await scrape(api), "storyline_asyncio_tasks")
    for _ in range(20):
        await asyncio.sleep(0.25)
        if idle == (idle := value(await scrape(api), "storyline_asyncio_tasks")):
            break
    assert idle >= 1
    async with connected(api.url, token(user)) as ws:
        await start(ws, project["id"])
        await next_event(ws, within=5)
        assert value(await scrape(api), "storyline_asyncio_tasks") > idle
    async with asyncio.timeout(5):
        while True:
            if value(await scrape(api), "storyline_asyncio_tasks") <= idle:
                return
            await asyncio.sleep(0.05)
