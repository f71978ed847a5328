"""The report's sections for the on-demand scenarios (bench/cluster.py): storm, ceiling."""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.report import Results

STORM_GOAL = 0.7  # Storyline's subscriptions per second during the storm / the floor's
WAITS_SHOWN = 8  # wait events in the histogram, most frequent first


def seconds(value: float) -> str:
    from bench.report import DASH, fmt

    return DASH if math.isnan(value) else fmt(value, 2) + " s"


def milliseconds(value: float) -> str:
    from bench.report import DASH, fmt

    return DASH if math.isnan(value) else fmt(value, 2) + " ms"


def cpu_per_subscription(row: dict[str, Any]) -> float:
    """Milliseconds of the survivors' CPU per watcher over the reconnect."""
    return float(row["cpu_server"] * row["reconnect_seconds"] / row["watchers"] * 1000)


def statements(row: dict[str, Any]) -> float:
    return float(row.get("statements_per_subscription", math.nan))


def storm_section(results: Results, sizes: dict[str, Any]) -> str:
    from bench.report import LABELS, cores, fmt, median, per_run, shown, table, verdict

    rows = []
    for system in results.systems("storm"):

        def med(key: str, system: str = system) -> float:
            return results.med("storm", system, key)

        def reconnected(row: dict[str, Any]) -> float:
            return float(row["reconnect"]["ready"])

        def failed(row: dict[str, Any]) -> float:
            return float(row["reconnect"]["failed"])

        current = results.med("storm", system, lambda row: row.get("current") or math.nan)
        rows.append(
            [
                LABELS[system],
                fmt(results.med("storm", system, reconnected), 0),
                fmt(results.med("storm", system, failed), 0),
                seconds(med("reconnect_seconds")),
                fmt(med("subscriptions_per_s"), 0) + "/s",
                fmt(current, 0),
                seconds(results.med("storm", system, lambda r: r.get("all_current_s") or math.nan)),
                cores(med("cpu_server")),
                milliseconds(results.med("storm", system, cpu_per_subscription)),
                cores(med("cpu_db")),
                fmt(results.med("storm", system, statements), 2),
            ]
        )
    ratios = results.ratios("storm", "subscriptions_per_s", "storyline", "ws-floor", {})
    ratio = median(ratios)
    return (
        f"{sizes['storm_watchers']:,} watchers, one connection and one `projectStatus` each, "
        "on instance A of three; A is killed (SIGKILL) and each watcher reconnects at once to "
        "one of the two survivors (round-robin) and subscribes again. Each watched project "
        "changed while A was down: *current* counts the watchers whose first event after "
        "the reconnect was that change, *all current* is when the last one had it, counted "
        "from the kill (the bare WebSocket server sends no state on subscribe). CPU (cores, "
        "both survivors together) over the reconnect; *CPU per subscription* is the "
        "survivors' CPU time over the reconnect per watcher, steadier than the rate on a "
        "shared machine; *statements per subscription*, the transactions PostgreSQL "
        "committed for the system's database meanwhile (each first read is one, and so is "
        "the ping of each checkout).\n\n"
        + table(
            [
                "system",
                "reconnected",
                "failed",
                "reconnect time",
                "subscriptions/s",
                "current",
                "all current",
                "CPU survivors",
                "CPU per subscription",
                "CPU PostgreSQL",
                "statements per subscription",
            ],
            rows,
        )
        + f"\nStoryline's rate against the floor's: {shown(ratio, STORM_GOAL)} "
        f"(per run {per_run(ratios)}; goal ≥ {STORM_GOAL:g}): "
        f"{verdict(ratio, STORM_GOAL, at_least=True)}.\n"
    )


def ceiling_section(results: Results, sizes: dict[str, Any]) -> str:
    from bench.report import cores, fmt, table

    steps = results.select("ceiling", "storyline")
    rows = []
    waits: Counter[str] = Counter()
    samples = 0
    for row in steps:
        rows.append(
            [
                str(row["run"] + 1),
                f"{row['rate']:g}/s",
                f"{row['updates'] / max(row['window_s'], 1e-3):.0f}/s",
                fmt(row["p50_ms"]),
                fmt(row["p99_ms"]),
                f"{100 * row['delivered']:.1f}%",
                fmt(row["response_ms"]["p99"]),
                " / ".join(cores(cpu) for cpu in row["cpu_instances"]),
                cores(row["cpu_db"]),
                cores(row["cpu_load"]),
            ]
        )
        waits.update(row["waits"])
        samples += row["wait_samples"]
    limit = sizes["ceiling_p99_ms"]
    passed = [row["rate"] for row in steps if row["p99_ms"] <= limit]
    below = f"{max(passed):g} updates/s" if passed else "none of the rates"
    histogram = table(
        ["wait event (type:event)", "active backends, on average", "share"],
        [
            [
                f"`{name}`",
                f"{count / max(samples, 1):.2f}",
                f"{100 * count / max(sum(waits.values()), 1):.0f}%",
            ]
            for name, count in waits.most_common(WAITS_SHOWN)
        ],
    )
    return (
        f"Three Storyline instances on one PostgreSQL, {sizes['ceiling_watchers']:,} watchers "
        "(one project each) spread over them; `updateStatus` spread over the instances, "
        f"spread over the projects, {sizes['ceiling_seconds']:g} s per step, rising until p99 "
        f"delivery passes {limit:g} ms. Highest rate with p99 ≤ {limit:g} ms: **{below}**.\n\n"
        + table(
            [
                "run",
                "offered",
                "sent",
                "p50 ms",
                "p99 ms",
                "delivered",
                "updateStatus p99 ms",
                "CPU per instance (cores)",
                "CPU PostgreSQL",
                "CPU load",
            ],
            rows,
        )
        + "\nPostgreSQL's active backends by wait event over every step (`CPU:running`: "
        "not waiting):\n\n" + histogram
    )


METHOD = """- **Reconnect storm** (scenario `storm`, on demand: `python -m bench --scenarios
  storm`). Three instances of each system (Storyline; the bare WebSocket server as the
  floor) on the one PostgreSQL. The watchers connect to the first; then it is killed with
  SIGKILL, every watched project is changed once in SQL, and the same watchers open new
  connections from load processes of their own (one per survivor, started before the
  kill), round-robin over the two survivors, up to `storm_concurrency` handshakes in flight
  per process. *Subscriptions/s* is watchers ready (for Storyline: the subscription's first
  event received) over the time from the first reconnect to the last; the target compares
  it with the floor's, where a watcher is ready once its subscription is acknowledged.
- **One PostgreSQL's ceiling** (scenario `ceiling`, on demand). Three Storyline instances,
  the watchers spread over them, one load process per instance; the pipeline's connections
  spread over the instances too; a ladder of `updateStatus` rates (`ceiling_rates`), each
  step as the wide scenario measures it, stopping at the first step whose p99 delivery
  passes `ceiling_p99_ms` (after an unrecorded 2 s at the first rate: the instances' first
  requests). During each step a connection of its own
  reads `pg_stat_activity` every 50 ms: each active backend counts once under its wait
  event, `CPU:running` if it waits for nothing. Read the histogram as backends busy on
  average: `Lock:object` (the one cluster-wide lock every notifying commit takes) or
  `LWLock:NotifyQueueLock` climbing with the rate says the notifying commits queue behind
  each other; `IO:WALSync` or `IO:WALWrite` says the commits wait for the disk; mostly
  `CPU:running`, with PostgreSQL's CPU near the cores available, says PostgreSQL's CPU is
  the limit; the instances' CPU near one core each says Storyline is.
"""
