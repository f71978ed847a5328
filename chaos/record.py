"""What happened during a run: every operation's outcome, every fault, and the deliveries
of live events, with the wall-clock times that the report's timeline is drawn from."""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

INTERNAL = "INTERNAL_SERVER_ERROR"


@dataclass
class FaultRecord:
    kind: str
    target: str
    started: float  # wall clock (time.time()), as the instances' logs are
    ended: float | None = None
    detail: str = ""


@dataclass
class Series:
    """Per second of the run: operations answered, and the p99 of event delivery (ms)."""

    seconds: list[int]
    operations: list[int]
    p99_ms: list[float]


@dataclass
class Recorder:
    started: float = field(default_factory=time.time)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    per_second: Counter[int] = field(default_factory=Counter)
    faults: list[FaultRecord] = field(default_factory=list)
    # (project id, version) -> when the request that made that version was sent
    origins: dict[tuple[str, int], float] = field(default_factory=dict)
    # (project id, version, received, when the receiving watcher first subscribed)
    receipts: list[tuple[str, int, float, float]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    # INTERNAL_SERVER_ERROR answers: (operation, request id, when)
    internal: list[tuple[str, str, float]] = field(default_factory=list)
    rss: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    marks: dict[str, float] = field(default_factory=dict)  # warm-up end, quiesce...

    def operation(self, name: str, outcome: str, *, detail: str = "", request_id: str = "") -> None:
        self.outcomes[(name, outcome)] += 1
        self.per_second[int(time.time() - self.started)] += 1
        if outcome == INTERNAL:
            self.internal.append((name, request_id, time.time()))
        elif detail and len(self.unexpected) < 200:
            self.unexpected.append(f"{name}: {outcome}: {detail}")

    def fault(self, kind: str, target: str = "", detail: str = "") -> FaultRecord:
        record = FaultRecord(kind, target, time.time(), detail=detail)
        self.faults.append(record)
        return record

    def made(self, project_id: str, version: int, sent: float) -> None:
        self.origins.setdefault((project_id, version), sent)

    def received(self, project_id: str, version: int, subscribed: float) -> None:
        self.receipts.append((project_id, version, time.time(), subscribed))

    def mark(self, name: str) -> None:
        self.marks[name] = time.time()

    def deliveries(self) -> list[tuple[float, float]]:
        """(received, seconds since the change was requested) of every event a watcher got
        live: changes requested after it had subscribed (not states read on subscribing)."""
        found = []
        for project_id, version, received, subscribed in self.receipts:
            origin = self.origins.get((project_id, version))
            if origin is not None and origin >= subscribed:
                found.append((received, received - origin))
        return found

    def series(self) -> Series:
        end = int(max([time.time() - self.started, *self.per_second.keys(), 0])) + 1
        by_second: dict[int, list[float]] = defaultdict(list)
        for received, latency in self.deliveries():
            by_second[int(received - self.started)].append(latency)
        seconds = list(range(end))
        return Series(
            seconds,
            [self.per_second.get(second, 0) for second in seconds],
            [percentile(by_second.get(second, []), 99) * 1000 for second in seconds],
        )


def percentile(values: list[float], rank: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]
