"""The pipeline and the editors' request load, one job per process: ``python -m bench.driver``.

Reads one JSON command on stdin, writes one JSON result on stdout.

``updates``: the pipeline's progress reports (progress never goes down: Storyline ignores a
report older than the project's progress) at a fixed rate (open loop, so a slow server
cannot slow the offered load down), each stamped with the wall-clock time it was sent in
its ``stage`` text (``b<seq>:<ns>``), either as Storyline's ``updateStatus`` mutation over
HTTP or, for the servers that only relay notifications, as the same row UPDATE in SQL.

``generate``: closed-loop clients calling ``generateStory`` (or the floor endpoint).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from typing import Any

from bench.httpclient import Connection, HttpError
from bench.wsclient import loads

REPORT = (
    "mutation Report($input: UpdateStatusInput!) { updateStatus(input: $input) { id version } }"
)
GRACE_SECONDS = 1.0
UPDATE_SQL = "UPDATE projects SET progress = $1, stage = $2 WHERE id = $3 RETURNING version"


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p99": float("nan")}
    ordered = sorted(values)
    return {
        "p50": ordered[int(0.50 * (len(ordered) - 1))],
        "p99": ordered[int(0.99 * (len(ordered) - 1))],
    }


class Senders:
    """Idle connections, handed out one per in-flight update."""

    def __init__(self, command: dict[str, Any]) -> None:
        self.via: str = command["via"]
        self.command = command
        self.idle: asyncio.Queue[Any] = asyncio.Queue()
        self.pool: Any = None

    async def open(self, count: int) -> None:
        if self.via == "sql":
            import asyncpg

            self.pool = await asyncpg.create_pool(
                self.command["dsn"], min_size=count, max_size=count
            )
            for _ in range(count):
                self.idle.put_nowait(None)
        else:
            # ``ports``: several instances, the connections spread over them round-robin.
            ports = self.command.get("ports") or [self.command["port"]]
            for index in range(count):
                self.idle.put_nowait(Connection("127.0.0.1", ports[index % len(ports)]))

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        while not self.idle.empty():
            connection = self.idle.get_nowait()
            if connection is not None:
                await connection.close()

    async def send(self, sender: Any, project_id: str, seq: int, stage: str) -> int:
        """The version the update committed as; raises on any error."""
        if self.via == "sql":
            version: int = await self.pool.fetchval(
                UPDATE_SQL, min(99, seq // 1000), stage, project_id
            )
            return version
        body = json.dumps(
            {
                "query": REPORT,
                "variables": {
                    "input": {
                        "projectId": project_id,
                        "status": "PROCESSING",
                        "progress": min(99, seq // 1000),
                        "stage": stage,
                    }
                },
            }
        ).encode()
        status, payload = await sender.post(
            self.command.get("path", "/graphql"),
            body,
            {"Authorization": f"Bearer {self.command['token']}"},
        )
        if status != 200:
            raise HttpError(f"HTTP {status}: {payload[:200]!r}")
        answer = loads(payload)
        if answer.get("errors"):
            raise HttpError(json.dumps(answer["errors"])[:300])
        return int(answer["data"]["updateStatus"]["version"])


async def updates(command: dict[str, Any]) -> dict[str, Any]:
    projects: list[str] = command["projects"]
    rate: float = command["rate"]
    count = max(1, int(rate * command["duration"]))
    seq_start: int = command["seq_start"]
    senders = Senders(command)
    await senders.open(command.get("concurrency", 32))
    best: dict[str, tuple[int, int]] = {}  # project -> (version, seq)
    response_ms: list[float] = []
    errors: list[str] = []
    error_count = 0
    late = unsent = 0
    first_send = last_send = 0
    cutoff = math.inf

    async def one(index: int, due: float) -> None:
        nonlocal error_count, late, first_send, last_send, unsent
        sender = await senders.idle.get()
        try:
            if time.monotonic() > cutoff:
                # Every connection stayed busy past the window: the server is not taking
                # reports any faster; stop offering rather than stretch the run.
                unsent += 1
                return
            seq = seq_start + index
            project_id = projects[index % len(projects)]
            if time.monotonic() - due > 0.005:
                late += 1
            sent = time.time_ns()
            first_send = first_send or sent
            last_send = max(last_send, sent)
            started = time.perf_counter()
            try:
                version = await senders.send(sender, project_id, seq, f"b{seq}:{sent}")
            except Exception as exc:
                error_count += 1
                if len(errors) < 5:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                return
            response_ms.append((time.perf_counter() - started) * 1000)
            if version > best.get(project_id, (-1, -1))[0]:
                best[project_id] = (version, seq)
        finally:
            senders.idle.put_nowait(sender)

    emit({"event": "measuring"})
    cpu = cpu_seconds()
    started = time.monotonic()
    cutoff = started + command["duration"] + GRACE_SECONDS
    tasks = []
    for index in range(count):
        due = started + index / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, due)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    await senders.close()
    return {
        "sent": count - unsent,
        "unsent": unsent,
        "errors": errors,
        "error_count": error_count,
        "late": late,
        "first_send_ns": first_send,
        "last_send_ns": last_send,
        "seconds": elapsed,
        "final": {project: seq for project, (_, seq) in best.items()},
        "response_ms": percentiles(response_ms),
        "cpu": cpu_seconds() - cpu,
    }


async def generate(command: dict[str, Any]) -> dict[str, Any]:
    body: bytes = command["body"].encode()
    tokens: list[str] = command["tokens"]
    concurrency: int = command["concurrency"]
    path: str = command["path"]
    warmup: float = command["warmup"]
    duration: float = command["duration"]
    latencies: list[float] = []
    errors: list[str] = []
    error_count = 0
    started = time.monotonic()
    measure_from = started + warmup
    stop = measure_from + duration
    cpu_at: list[float] = []

    async def client(index: int) -> None:
        nonlocal error_count
        connection = Connection("127.0.0.1", command["port"])
        headers = {"Authorization": f"Bearer {tokens[index % len(tokens)]}"}
        try:
            while time.monotonic() < stop:
                begun = time.monotonic()
                try:
                    status, payload = await connection.post(path, body, headers)
                    answer = loads(payload) if status == 200 else {"errors": [f"HTTP {status}"]}
                    failure = answer.get("errors")
                except HttpError as exc:
                    failure = str(exc)
                ended = time.monotonic()
                if begun >= measure_from and ended <= stop:
                    if failure:
                        error_count += 1
                        if len(errors) < 5:
                            errors.append(json.dumps(failure)[:300])
                    else:
                        latencies.append((ended - begun) * 1000)
        finally:
            await connection.close()

    async def mark_cpu() -> None:
        await asyncio.sleep(warmup)
        emit({"event": "measuring"})
        cpu_at.append(cpu_seconds())

    marker = asyncio.create_task(mark_cpu())
    await asyncio.gather(*(client(index) for index in range(concurrency)))
    await marker
    return {
        "completed": len(latencies),
        "throughput": len(latencies) / duration,
        "latency_ms": percentiles(latencies),
        "errors": errors,
        "error_count": error_count,
        "cpu": cpu_seconds() - cpu_at[0],
    }


async def run() -> None:
    command = json.loads(sys.stdin.readline())
    job = {"updates": updates, "generate": generate}[command["cmd"]]
    emit(await job(command))


def main() -> None:
    try:
        import uvloop

        uvloop.run(run())
    except ImportError:  # pragma: no cover
        asyncio.run(run())


if __name__ == "__main__":
    main()
