"""What one GraphQL mutation costs the API process, called in process with no network.

Builds Storyline's ASGI application against the bench's own PostgreSQL (and, for
``generateStory``, the zero-latency upstream in a process of its own), then calls it one
request after the other straight through the ASGI interface (a minimal scope, receive and
send: no HTTP parsing, no sockets), and prints per call:

- the process CPU and the wall time;
- the containers the call left for the cycle collector (``gc.DEBUG_SAVEALL`` over the
  round, then one collection): what reference counting did not free, and what makes the
  collector's pauses, which stall every request and live event behind them.

``--profile FILE`` also writes cProfile's tables of the measured calls (and FILE.pstats).
Run: ``python -m bench.operations [--operation update|generate] [--calls N] [--rounds R]``.
The numbers compare code changes with each other, not with the scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import itertools
import json
import pstats
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
from starlette.applications import Starlette

from bench.harness import PYTHON, Child, free_port, on_scratch_database, wait_ready
from bench.scenarios import GENERATE_BODY, JWT_SECRET, token
from storyline.app import create_app
from storyline.config import Settings

REPORT = (
    "mutation Report($input: UpdateStatusInput!) { updateStatus(input: $input) { id version } }"
)
PROJECTS = 50
USER = "ops-user"


async def post(app: Starlette, body: bytes, authorization: bytes) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", authorization),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
        "app": app,
    }
    received = False
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            await asyncio.Event().wait()
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    answer = json.loads(b"".join(chunks))
    if answer.get("errors"):
        raise RuntimeError(answer["errors"])


async def seed(url: str) -> list[str]:
    """PROCESSING projects to report on, and a user with credits to generate with."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO accounts (user_id, balance) VALUES ($1, 2000000000)", USER)
        rows = await conn.fetch(
            """
            INSERT INTO projects (id, user_id, status, credits_used, prompt, quality,
                aspect_ratio, image_model, request_fingerprint)
            SELECT gen_random_uuid(), $1, 'PROCESSING', 60, 'bench', 'HD',
                'LANDSCAPE_16_9', 'comfyui/flux', 'bench' FROM generate_series(1, $2)
            RETURNING id::text
            """,
            USER,
            PROJECTS,
        )
    finally:
        await conn.close()
    return [row[0] for row in rows]


def report_bodies(project_ids: list[str]) -> Callable[[], bytes]:
    sequence = itertools.count(1)

    def body() -> bytes:
        seq = next(sequence)
        report = {
            "projectId": project_ids[seq % len(project_ids)],
            "status": "PROCESSING",
            "progress": min(99, seq // 1000),
            "stage": f"b{seq}:{time.time_ns()}",
        }
        return json.dumps({"query": REPORT, "variables": {"input": report}}).encode()

    return body


def garbage_summary(garbage: list[Any], calls: int) -> str:
    kinds = Counter(f"{type(item).__module__}.{type(item).__qualname__}" for item in garbage)
    top = ", ".join(f"{kind} {count / calls:g}" for kind, count in kinds.most_common(5))
    return f"{len(garbage) / calls:5.1f} containers/call to the cycle collector" + (
        f" ({top})" if top else ""
    )


async def measure(
    app: Starlette, body: Callable[[], bytes], authorization: bytes, args: argparse.Namespace
) -> None:
    for _ in range(50):  # warm: connections, prepared statements, caches
        await post(app, body(), authorization)
    profiler = cProfile.Profile() if args.profile else None
    for round_ in range(args.rounds):
        bodies = [body() for _ in range(args.calls)]
        gc.collect()
        gc.disable()  # collections at their own moments would hide what is left over
        if profiler:
            profiler.enable()
        cpu, wall = time.process_time(), time.perf_counter()
        for payload in bodies:
            await post(app, payload, authorization)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profiler:
            profiler.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        gc.set_debug(0)
        leftover = garbage_summary(gc.garbage, args.calls)
        gc.garbage.clear()
        gc.enable()
        print(
            f"round {round_ + 1}/{args.rounds}, {args.operation}: "
            f"{cpu * 1e6 / args.calls:5.0f} µs CPU {wall * 1e6 / args.calls:5.0f} µs wall "
            f"per call ({args.calls} calls); {leftover}",
            flush=True,
        )
    if profiler:
        with args.profile.open("w") as out:
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(60)
            stats.sort_stats("cumulative").print_stats(80)
        profiler.dump_stats(str(args.profile) + ".pstats")


async def run(url: str, work: Path, args: argparse.Namespace) -> None:
    project_ids = await seed(url)
    async with AsyncExitStack() as stack:
        upstream_url = None
        if args.operation == "generate":
            port = free_port()
            upstream = Child(
                "upstream",
                [PYTHON, "-m", "bench.upstream", "--port", str(port)],
                log=work / "upstream.log",
            )
            await upstream.start()
            stack.push_async_callback(upstream.stop)
            await wait_ready(upstream, port, "/healthz")
            upstream_url = f"http://127.0.0.1:{port}"
        settings = Settings(
            jwt_secret=JWT_SECRET,  # type: ignore[arg-type]
            upstream_url=upstream_url,
            log_level="WARNING",
        )
        app = create_app(settings, database_url=url, self_url="http://bench")
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        stack.push_async_exit(lifespan.__aexit__)
        if args.operation == "generate":
            authorization = f"Bearer {token(USER)}".encode()
            await measure(app, GENERATE_BODY.encode, authorization, args)
        else:
            authorization = f"Bearer {token('ops-pipeline', 'pipeline')}".encode()
            await measure(app, report_bodies(project_ids), authorization, args)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.operations")
    parser.add_argument("--operation", choices=["update", "generate"], default="update")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args()
    on_scratch_database("operations", lambda url, work: run(url, work, args))


if __name__ == "__main__":
    main()
