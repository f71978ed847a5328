"""A load process: watchers (browser-like WebSocket subscribers, or raw LISTEN connections).

Run as ``python -m bench.load``; the orchestrator drives it with one JSON command per line
on stdin and reads one JSON answer per line on stdout:

    connect  {kind, port, path, watchers: [[project id, token], ...], fields, ...}
    subscribe {fields, concurrency}  more subscriptions on every watcher's connection
    reset    {seq_start}            start recording deliveries of updates >= seq_start
    drain    {final, timeout, out}  wait for every watcher's final state; write latencies
                                    (out) and which subscription each came by (out.streams)
    close    {}                     close everything and exit

``fields`` (Storyline, naive): the subscriptions each watcher's one connection carries, in
order, among ``SUBSCRIPTIONS``' keys; by default one projectStatus. ``subscribe`` adds
more, before measuring (what was recorded per subscription is reset).
"""

from __future__ import annotations

import array
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.wsclient import Watcher, loads

STORYLINE_QUERY = """subscription Watch($id: ID!) {
  projectStatus(projectId: $id) {
    projectId status version progress stage errorMessage resultUrl updatedAt
  }
}"""
POSTGRAPHILE_QUERY = """subscription Watch($topic: String!) {
  listen(topic: $topic) { relatedNodeId }
}"""
ACCOUNT_QUERY = """subscription Dashboard {
  accountChanges {
    __typename
    ... on ProjectStatusEvent {
      projectId status version progress stage errorMessage resultUrl updatedAt
    }
    ... on BalanceChange {
      balance
      entry { id kind amount balanceAfter projectId reason createdAt }
    }
  }
}"""
RAW_CHANNEL = "storyline_project"
# A subscription's payload by its field's name, for the project a watcher follows.
SUBSCRIPTIONS: dict[str, Callable[[str], dict[str, Any]]] = {
    "projectStatus": lambda project_id: {"query": STORYLINE_QUERY, "variables": {"id": project_id}},
    "accountChanges": lambda _project_id: {"query": ACCOUNT_QUERY, "variables": {}},
}


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class Recorder:
    """Deliveries of the updates being measured: latency in microseconds, the subscription
    (stream: its index in the watcher's fields) each came by, receipt times."""

    def __init__(self) -> None:
        self.seq_start: int | None = None
        self.latencies = array.array("q")
        self.streams = array.array("B")
        self.first_ns = 0
        self.last_ns = 0
        self.cpu_start = cpu_seconds()

    def reset(self, seq_start: int) -> None:
        self.seq_start = seq_start
        self.latencies = array.array("q")
        self.streams = array.array("B")
        self.first_ns = 0
        self.last_ns = 0
        self.cpu_start = cpu_seconds()

    def record(self, now: int, seq: int, sent: int, stream: int = 0) -> bool:
        if self.seq_start is None or seq < self.seq_start:
            return False
        self.latencies.append((now - sent) // 1000)
        self.streams.append(stream)
        if not self.first_ns:
            self.first_ns = now
        self.last_ns = now
        return True


class WatcherPool:
    def __init__(self, command: dict[str, Any], recorder: Recorder) -> None:
        self.kind: str = command["kind"]
        self.port: int = command["port"]
        self.path: str = command.get("path", "/graphql")
        self.initial_event = self.kind in ("storyline", "naive")
        self.attempts: int = command.get("attempts", 2)
        self.fields: list[str] = command.get("fields") or ["projectStatus"]
        self.recorder = recorder
        self.slots: list[Watcher | None] = []
        # Per receiver, that is per watcher and subscription: receiver = slot * streams + stream.
        self.streams = len(self.fields)
        self.seen: list[set[int]] = []
        self.last_seq: list[int] = []
        self.errors: list[str] = []
        self.error_count = 0
        self.dropped = 0
        self.duplicates = [0] * self.streams  # per subscription of a watcher
        self.retries = 0
        self.closing = False

    def operations(self, project_id: str, first: int = 0) -> list[tuple[str, dict[str, Any]]]:
        """(operation id, subscribe payload) of each of a watcher's subscriptions, from the
        ``first`` of ``fields`` on; operation "1" is the first field."""
        if self.kind == "postgraphile":
            return [("1", {"query": POSTGRAPHILE_QUERY, "variables": {"topic": project_id}})]
        return [
            (str(index + 1), SUBSCRIPTIONS[name](project_id))
            for index, name in enumerate(self.fields)
            if index >= first
        ]

    # callbacks from Watcher
    def delivered(self, watcher: Watcher, stream: int, now: int, seq: int, sent: int) -> None:
        if stream >= self.streams or not self.recorder.record(now, seq, sent, stream):
            return
        receiver = watcher.slot * self.streams + stream
        seen = self.seen[receiver]
        if seq in seen:
            self.duplicates[stream] += 1
        seen.add(seq)
        self.last_seq[receiver] = seq

    def failed(self, watcher: Watcher, text: str) -> None:
        self.error_count += 1
        if len(self.errors) < 5:
            self.errors.append(text)

    def lost(self, watcher: Watcher) -> None:
        if not self.closing and watcher.ready.done() and watcher.ready.exception() is None:
            self.dropped += 1

    async def connect(self, watchers: list[list[str]], concurrency: int) -> dict[str, Any]:
        started = time.monotonic()
        gate = asyncio.Semaphore(concurrency)
        loop = asyncio.get_running_loop()
        first = len(self.slots)
        self.slots.extend([None] * len(watchers))
        self.seen.extend(set() for _ in range(len(watchers) * self.streams))
        self.last_seq.extend(-1 for _ in range(len(watchers) * self.streams))

        async def open_one(slot: int, project_id: str, token: str) -> bool:
            init = {"Authorization": f"Bearer {token}"}
            for attempt in range(self.attempts):
                async with gate:
                    watcher: Watcher | None = None
                    try:
                        _, watcher = await loop.create_connection(
                            lambda: Watcher(self, slot, project_id, init), "127.0.0.1", self.port
                        )
                        await asyncio.wait_for(asyncio.shield(watcher.ready), timeout=20)
                        self.slots[slot] = watcher
                        return True
                    except (OSError, ConnectionError, TimeoutError) as exc:
                        if watcher is not None:
                            watcher.close()
                        if len(self.errors) < 5:
                            self.errors.append(f"connect: {exc!r}"[:300])
                if attempt + 1 < self.attempts:
                    self.retries += 1
                    # A browser retries after a pause; spread the retries out.
                    await asyncio.sleep(random.uniform(0.1, 0.5) * (attempt + 1))
            return False

        results = await asyncio.gather(
            *(open_one(first + i, project, token) for i, (project, token) in enumerate(watchers))
        )
        answer = {
            "ready": sum(results),
            "failed": len(results) - sum(results),
            "seconds": time.monotonic() - started,
            "errors": self.errors,
            "error_count": self.error_count,
            "retries": self.retries,
        }
        self.clear()
        return answer

    async def add_fields(self, fields: list[str], concurrency: int) -> dict[str, Any]:
        """Subscribe every live watcher's connection to ``fields`` too."""
        started = time.monotonic()
        gate = asyncio.Semaphore(concurrency)
        first = self.streams
        self.fields = [*self.fields, *fields]
        self.streams = len(self.fields)
        self.seen = [set() for _ in range(len(self.slots) * self.streams)]
        self.last_seq = [-1] * (len(self.slots) * self.streams)
        self.duplicates = [0] * self.streams

        async def add(watcher: Watcher) -> bool:
            async with gate:
                answered = watcher.subscribe(self.operations(watcher.project_id, first))
                try:
                    await asyncio.wait_for(asyncio.shield(answered), timeout=20)
                except (ConnectionError, TimeoutError) as exc:
                    if len(self.errors) < 5:
                        self.errors.append(f"subscribe: {exc!r}"[:300])
                    return False
                return True

        live = [watcher for watcher in self.slots if watcher is not None and not watcher.closed]
        results = await asyncio.gather(*(add(watcher) for watcher in live))
        answer = {
            "ready": sum(results),
            "failed": len(results) - sum(results),
            "seconds": time.monotonic() - started,
            "errors": self.errors,
            "error_count": self.error_count,
            "retries": 0,
        }
        self.clear()
        return answer

    def clear(self) -> None:
        self.errors = []
        self.error_count = self.dropped = self.retries = 0
        self.duplicates = [0] * self.streams

    def receivers(self) -> list[tuple[Watcher, int]]:
        """(watcher, receiver index) for each subscription of each live watcher."""
        return [
            (watcher, slot * self.streams + stream)
            for slot, watcher in enumerate(self.slots)
            if watcher is not None
            for stream in range(self.streams)
        ]

    def pending(self, final: dict[str, int]) -> int:
        """Subscriptions that have not yet received their project's final state."""
        missing = 0
        for watcher, receiver in self.receivers():
            want = final.get(watcher.project_id)
            if want is not None and want not in self.seen[receiver]:
                missing += 1
        return missing

    def stale(self, final: dict[str, int]) -> int:
        """Subscriptions whose last delivery is not their project's final state (older
        shown last)."""
        count = 0
        for watcher, receiver in self.receivers():
            want = final.get(watcher.project_id)
            if want is not None and want in self.seen[receiver] and self.last_seq[receiver] != want:
                count += 1
        return count

    def spread(self) -> list[int]:
        """The fewest and the most deliveries any live subscription got."""
        counts = [len(self.seen[receiver]) for _, receiver in self.receivers()]
        return [min(counts), max(counts)] if counts else [0, 0]

    def forget(self) -> None:
        for seen in self.seen:
            seen.clear()

    def close(self) -> None:
        self.closing = True
        for watcher in self.slots:
            if watcher is not None:
                watcher.close()


class RawListeners:
    """The floor of the floor: asyncpg LISTEN connections, no server in between."""

    def __init__(self, command: dict[str, Any], recorder: Recorder) -> None:
        self.dsn: str = command["dsn"]
        self.recorder = recorder
        self.connections: list[Any] = []
        self.received: list[int] = []
        self.errors: list[str] = []
        self.error_count = 0
        self.dropped = 0
        self.retries = 0

    async def connect(self, count: int) -> dict[str, Any]:
        import asyncpg

        started = time.monotonic()
        for index in range(count):
            connection = await asyncpg.connect(self.dsn)
            self.received.append(0)

            def notified(
                _conn: object, _pid: int, _channel: str, payload: str, index: int = index
            ) -> None:
                now = time.time_ns()
                stage = loads(payload).get("stage") or ""
                if stage.startswith("b"):
                    seq_text, _, sent_text = stage[1:].partition(":")
                    if self.recorder.record(now, int(seq_text), int(sent_text)):
                        self.received[index] += 1

            await connection.add_listener(RAW_CHANNEL, notified)
            self.connections.append(connection)
        return {"ready": count, "failed": 0, "seconds": time.monotonic() - started}

    def pending(self, total: int) -> int:
        return sum(1 for received in self.received if received < total)

    def forget(self) -> None:
        self.received = [0] * len(self.received)

    async def close(self) -> None:
        for connection in self.connections:
            await connection.close()


async def serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    recorder = Recorder()
    pool: WatcherPool | None = None
    raw: RawListeners | None = None

    def answer(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    while True:
        line = await reader.readline()
        if not line:
            break
        command = json.loads(line)
        name = command["cmd"]
        if name == "connect":
            if command["kind"] == "pg-raw":
                raw = raw or RawListeners(command, recorder)
                answer(await raw.connect(command["listeners"]))
            else:
                pool = pool or WatcherPool(command, recorder)
                answer(await pool.connect(command["watchers"], command.get("concurrency", 64)))
        elif name == "subscribe":
            if pool is None:  # no watchers here
                answer({"ready": 0, "failed": 0, "seconds": 0.0, "errors": []})
            else:
                answer(await pool.add_fields(command["fields"], command.get("concurrency", 64)))
        elif name == "reset":
            recorder.reset(command["seq_start"])
            if pool is not None:
                pool.forget()
                pool.clear()
            if raw is not None:
                raw.forget()
            answer({"ok": True})
        elif name == "drain":
            deadline = time.monotonic() + command["timeout"]
            final: dict[str, int] = command["final"]
            total: int = command["total"]
            while True:
                missing = pool.pending(final) if pool else raw.pending(total) if raw else 0
                if missing == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.02)
            cpu = cpu_seconds() - recorder.cpu_start
            # Small, local and once per measurement: not worth a thread.
            Path(command["out"]).write_bytes(recorder.latencies.tobytes())  # noqa: ASYNC240
            Path(command["out"] + ".streams").write_bytes(recorder.streams.tobytes())  # noqa: ASYNC240
            source: WatcherPool | RawListeners | None = pool or raw
            answer(
                {
                    "deliveries": len(recorder.latencies),
                    "first_ns": recorder.first_ns,
                    "last_ns": recorder.last_ns,
                    "missing": missing,
                    "per_watcher": pool.spread() if pool else [0, 0],
                    "stale": pool.stale(final) if pool else 0,
                    "cpu": cpu,
                    "errors": source.errors if source else [],
                    "error_count": source.error_count if source else 0,
                    "dropped": source.dropped if source else 0,
                    "duplicates": pool.duplicates if pool else [0],
                    "retries": source.retries if source else 0,
                }
            )
        elif name == "close":
            if pool is not None:
                pool.close()
            if raw is not None:
                await raw.close()
            await asyncio.sleep(0.2)
            answer({"ok": True})
            break


def main() -> None:
    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:  # pragma: no cover
        asyncio.run(serve())


if __name__ == "__main__":
    main()
