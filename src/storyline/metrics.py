"""Prometheus metrics of one instance, in a registry of its own (served at /metrics).

With ``--workers N`` each worker counts for itself; scrape the instances, not a sum.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import perf_counter

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "storyline_graphql_requests",
            "GraphQL operations by root field and outcome (ok or the error code)",
            ["operation", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "storyline_graphql_request_duration_seconds",
            "Time to answer a GraphQL query or mutation",
            ["operation"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.websockets = Gauge(
            "storyline_websocket_connections", "Open WebSocket connections", registry=r
        )
        self.subscriptions = Gauge(
            "storyline_subscriptions", "Live projectStatus subscriptions", registry=r
        )
        self.events = Tally(
            "storyline_events_delivered", "projectStatus events sent to clients", registry=r
        )
        self.reconnects = Gauge(
            "storyline_listener_reconnects",
            "Times the notification listener has reconnected since start",
            registry=r,
        )
        self.tasks = Gauge(
            "storyline_asyncio_tasks",
            "asyncio tasks alive in the instance's event loop (finished ones not counted)",
            registry=r,
        )
        self.charged = Counter(
            "storyline_credits_charged", "Credits charged for new projects", registry=r
        )
        self.refunded = Counter(
            "storyline_credits_refunded", "Credits refunded for failed projects", registry=r
        )
        self.sweeps = Counter(
            "storyline_sweeper_actions",
            "Projects the sweeper resolved, by action",
            ["action"],
            registry=r,
        )

    def follow(self, *, subscriptions: Callable[[], int], reconnects: Callable[[], int]) -> None:
        """Gauges read at scrape time from the live objects; called in the serving loop, whose
        tasks are then counted: an idle instance's count returning to where it was tells
        that nothing the load started was left behind."""
        self.subscriptions.set_function(subscriptions)
        self.reconnects.set_function(reconnects)
        loop = asyncio.get_running_loop()
        self.tasks.set_function(lambda: len(asyncio.all_tasks(loop)))

    @contextmanager
    def websocket(self) -> Iterator[None]:
        self.websockets.inc()
        try:
            yield
        finally:
            self.websockets.dec()

    def observe(self, operation: str, outcome: str, started: float) -> None:
        self.requests.labels(operation, outcome).inc()
        self.latency.labels(operation).observe(perf_counter() - started)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Tally(Collector):
    """A counter without labels for the fan-out path: ``inc`` is an integer addition (a
    prometheus_client Counter takes a lock per increment; this one is bumped once per
    delivered event), read when /metrics is scraped. Only the event loop's thread bumps it.
    """

    def __init__(self, name: str, documentation: str, *, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.value = 0
        registry.register(self)

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.value)
