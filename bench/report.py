"""Results -> docs/benchmarks.md and docs/benchmark-hot-fanout.png.

Every number in the tables is the median over the runs; every ratio is the median of the
per-run ratios (Storyline and its baseline measured minutes apart in the same run), which
is what survives a shared, noisy machine.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import cluster_report

PLOT = "benchmark-hot-fanout.png"
PROFILE_HOT = "profile-hot-fanout.txt"
PROFILE_GENERATE = "profile-generate.txt"
PROFILE_ACCOUNT = "profile-account.txt"
PROFILE_STORM = "profile-storm.txt"
LABELS = {
    "storyline": "Storyline",
    "naive": "naive (bench/naive)",
    "postgraphile": "PostGraphile 4 + pg-pubsub",
    "ws-floor": "floor: bare WebSocket server",
    "pg-raw": "floor: asyncpg NOTIFY → LISTEN",
    "floor": "floor: bare Starlette endpoint",
}
ORDER = ["storyline", "postgraphile", "naive", "ws-floor", "floor", "pg-raw"]
COLORS = {
    "storyline": "tab:blue",
    "postgraphile": "tab:orange",
    "naive": "tab:red",
    "ws-floor": "tab:green",
    "pg-raw": "tab:gray",
}

Row = dict[str, Any]
X = "\u00d7"  # multiplication sign
DASH = "\u2013"  # en dash: no value


def median(values: list[float]) -> float:
    clean = [value for value in values if value is not None and not math.isnan(value)]
    return statistics.median(clean) if clean else math.nan


def fmt(value: float, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if abs(value) >= 1000 and digits <= 1:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


class Results:
    def __init__(self, rows: list[Row]) -> None:
        # Memory rows name the subscription they measured; older results measured only
        # projectStatus.
        self.rows = [
            {"field": "projectStatus", **row} if row["scenario"] == "memory" else row
            for row in rows
        ]
        self.runs = sorted({row["run"] for row in rows})

    def select(self, scenario: str, system: str, **match: Any) -> list[Row]:
        return [
            row
            for row in self.rows
            if row["scenario"] == scenario
            and row["system"] == system
            and all(row.get(key) == value for key, value in match.items())
        ]

    def systems(self, scenario: str, **match: Any) -> list[str]:
        present = {
            row["system"]
            for row in self.rows
            if row["scenario"] == scenario
            and all(row.get(key) == value for key, value in match.items())
        }
        return [system for system in ORDER if system in present]

    def med(
        self, scenario: str, system: str, key: str | Callable[[Row], float], **match: Any
    ) -> float:
        rows = self.select(scenario, system, **match)
        pick = key if callable(key) else (lambda row: row.get(key, math.nan))
        return median([pick(row) for row in rows])

    def ratios(
        self,
        scenario: str,
        key: str,
        system: str,
        baseline: str,
        match: dict[str, Any],
        baseline_match: dict[str, Any] | None = None,
    ) -> list[float]:
        """system/baseline in each run, both measured in that run (the baseline's rows
        chosen by ``baseline_match`` if given, else by ``match`` too)."""
        ratios = []
        for run in self.runs:
            mine = self.select(scenario, system, run=run, **match)
            theirs = self.select(
                scenario, baseline, run=run, **(match if baseline_match is None else baseline_match)
            )
            if mine and theirs and theirs[0].get(key):
                ratios.append(mine[0][key] / theirs[0][key])
        return ratios

    def ratio(
        self,
        scenario: str,
        key: str,
        system: str,
        baseline: str,
        match: dict[str, Any],
        baseline_match: dict[str, Any] | None = None,
    ) -> float:
        """Median over runs of system/baseline, each pair from the same run."""
        return median(self.ratios(scenario, key, system, baseline, match, baseline_match))

    def values(self, scenario: str, system: str, key: str, **match: Any) -> list[float]:
        return [row.get(key, math.nan) for row in self.select(scenario, system, **match)]


def verdict(value: float, goal: float, *, at_least: bool) -> str:
    if math.isnan(value):
        return "n/a"
    ok = value >= goal if at_least else value <= goal
    return "**PASS**" if ok else "**FAIL**"


def cores(value: float) -> str:
    return fmt(value, 2)


def write_report(document: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results = Results(document["results"])
    sizes = document["sizes"]
    machine = document["machine"]
    headline = sizes["hot_watchers"][-1]
    has_plot = plot(results, sizes, out / PLOT)
    parts: list[str] = []
    add = parts.append

    add("# Storyline benchmarks\n\n")
    add(
        "Generated by `make bench` (`.venv/bin/python -m bench`); do not edit by hand. "
        "It starts its own PostgreSQL, every server and the load processes, runs each scenario "
        "against Storyline and its baselines in the same invocation, and rewrites this page, "
        f"[`{PLOT}`]({PLOT}), [`{PROFILE_HOT}`]({PROFILE_HOT}), "
        f"[`{PROFILE_ACCOUNT}`]({PROFILE_ACCOUNT}) and "
        f"[`{PROFILE_GENERATE}`]({PROFILE_GENERATE}).\n\n"
    )
    add(
        f"- **Command:** `{document['command']}`\n"
        f"- **Date:** {document['date']} (took {document['duration_s'] / 60:.1f} min)\n"
        f"- **Runs:** {sizes['runs']}; tables show medians, ratios are medians of per-run ratios.\n"
    )
    versions: dict[int, list[str]] = {}
    for row in results.rows:
        if row["system"] == "storyline" and row.get("code"):
            seen = versions.setdefault(row["run"], [])
            if row["code"] not in seen:
                seen.append(row["code"])
    if versions:
        listed = "; ".join(
            f"run {run + 1}: " + ", ".join(f"`{code}`" for code in codes)
            for run, codes in sorted(versions.items())
        )
        add(f"- **Storyline code under test** (commit at each server start): {listed}\n")
        if len({code for codes in versions.values() for code in codes}) > 1:
            add(
                "- **Warning:** the code changed while the bench ran (others committed); "
                "Storyline's rows come from different versions, read the per-run column "
                "with care.\n"
            )
    add("\n## Machine\n\n")
    add(
        table(
            ["", ""],
            [
                ["CPUs (nproc)", str(machine.get("nproc"))],
                ["CPU model", str(machine.get("cpu"))],
                ["Memory", f"{machine.get('memory_gb')} GB"],
                ["Kernel", str(machine.get("kernel"))],
                ["Python", str(machine.get("python"))],
                [
                    "Python speed (10M-addition loop, best of 3)",
                    f"{machine['python_loop_s']} s" if "python_loop_s" in machine else DASH,
                ],
                [
                    "PostgreSQL",
                    f"{machine.get('postgres')} (pgserver, unix socket, started by the bench)",
                ],
                ["Node.js", str(machine.get("node"))],
                ["PostGraphile", str(machine.get("postgraphile", "not run"))],
                ["Open files limit", str(machine.get("file_limit"))],
            ],
        )
    )
    add(
        "\nLoad generator, servers and PostgreSQL share these cores. Absolute numbers move with "
        "the neighbours' load; the ratios are what to read.\n"
    )

    add("\n## Targets\n\n")
    add(targets(results, sizes))

    add(f"\n## 1. Hot fan-out: {headline:,} watchers of one project\n\n")
    add(hot_section(results, sizes, has_plot))
    add(f"\n## 2. Wide: {sizes['wide_watchers']:,} watchers, each on its own project\n\n")
    add(wide_section(results, sizes))
    add(f"\n## 3. generateStory at {sizes['generate_concurrency']} concurrent clients\n\n")
    add(generate_section(results, sizes))
    count = sizes["memory_subscriptions"]
    add(f"\n## 4. Memory per idle subscription ({count:,} subscriptions)\n\n")
    add(memory_section(results))
    if "account_users" in sizes:
        users = sizes["account_users"]
        add(f"\n## 5. The editors' dashboard: {users:,} users, accountChanges + projectStatus\n\n")
        add(account_section(results, sizes))
    if results.systems("storm"):
        add(f"\n## Reconnect storm: {sizes['storm_watchers']:,} watchers, one instance killed\n\n")
        add(cluster_report.storm_section(results, sizes))
        add("\n### Where Storyline's time goes while watchers subscribe\n\n")
        during = "a separate pass of the storm's watchers"
        add(profile_section(out / PROFILE_STORM, during, "storm"))
    if results.systems("ceiling"):
        add("\n## The ceiling of one PostgreSQL: three instances, updateStatus rising\n\n")
        add(cluster_report.ceiling_section(results, sizes))
    add("\n## Where Storyline's time goes in hot fan-out\n\n")
    add(profile_section(out / PROFILE_HOT, "a separate hot fan-out pass", "hot"))
    add("\n## Where Storyline's time goes on the editors' dashboard\n\n")
    add(profile_section(out / PROFILE_ACCOUNT, "a separate dashboard pass", "account"))
    add("\n## Where Storyline's time goes in generateStory\n\n")
    add(profile_section(out / PROFILE_GENERATE, "a separate generateStory pass", "generate"))
    add("\n## Running it\n\n")
    add(RUNNING)
    add("\n## Notes\n\n")
    add(notes_section(results))
    add("\n## How it is measured\n\n")
    add(method_section(sizes))
    add(cluster_report.METHOD)
    (out / "benchmarks.md").write_text("".join(parts))


def shown(value: float, goal: float) -> str:
    """A ratio, with one more digit when it sits on the goal."""
    if math.isnan(value):
        return DASH
    close = abs(value - goal) < 0.01 * goal
    return fmt(value, 3 if close else 2) + X


def unit(value: float, suffix: str, digits: int = 1) -> str:
    return DASH if math.isnan(value) else fmt(value, digits) + suffix


def per_run(values: list[float], digits: int = 2) -> str:
    return " / ".join(fmt(value, digits) for value in values) or DASH


def targets(results: Results, sizes: dict[str, Any]) -> str:
    headline = sizes["hot_watchers"][-1]
    capacity = {"phase": "capacity"}
    latency = {"phase": "latency", "watchers": headline}
    rows = []

    def add_ratio(
        label: str,
        scenario: str,
        key: str,
        baseline: str,
        match: dict[str, Any],
        goal: float,
        *,
        at_least: bool,
        suffix: str,
        digits: int = 1,
        baseline_match: dict[str, Any] | None = None,
    ) -> None:
        ratios = results.ratios(scenario, key, "storyline", baseline, match, baseline_match)
        ratio = median(ratios)
        theirs = match if baseline_match is None else baseline_match
        rows.append(
            [
                label,
                unit(results.med(scenario, "storyline", key, **match), suffix, digits),
                unit(results.med(scenario, baseline, key, **theirs), suffix, digits),
                shown(ratio, goal),
                per_run(ratios),
                ("≥ " if at_least else "≤ ") + f"{goal:g}{X}",
                verdict(ratio, goal, at_least=at_least),
            ]
        )

    def add_value(
        label: str,
        scenario: str,
        key: str,
        goal: float,
        *,
        at_least: bool,
        suffix: str,
        baseline: str = DASH,
        digits: int = 1,
    ) -> None:
        values = results.values(scenario, "storyline", key)
        value = median(values)
        rows.append(
            [
                label,
                unit(value, suffix, digits),
                baseline,
                DASH,
                per_run(values, digits) + (suffix if values else ""),
                ("≥ " if at_least else "≤ ") + f"{goal:g}{suffix}",
                verdict(value, goal, at_least=at_least),
            ]
        )

    add_ratio(
        f"Hot fan-out deliveries/s ≥ 1.15{X} PostGraphile (capacity phase)",
        "hot",
        "deliveries_per_s",
        "postgraphile",
        capacity,
        1.15,
        at_least=True,
        suffix="",
        digits=0,
    )
    add_ratio(
        f"Hot fan-out p99 ≤ 0.8{X} PostGraphile ({sizes['hot_rate']:g} updates/s)",
        "hot",
        "p99_ms",
        "postgraphile",
        latency,
        0.8,
        at_least=False,
        suffix=" ms",
    )
    add_value(
        "Wide p99 ≤ 20 ms",
        "wide",
        "p99_ms",
        20.0,
        at_least=False,
        suffix=" ms",
        baseline=f"floor {fmt(results.med('wide', 'ws-floor', 'p99_ms'))} ms",
    )
    add_ratio(
        f"Memory per idle subscription ≤ 1.3{X} a bare WebSocket",
        "memory",
        "kb_per_subscription",
        "ws-floor",
        {"field": "projectStatus"},
        1.3,
        at_least=False,
        suffix=" KB",
    )
    users = sizes.get("account_users", 0)
    add_value(
        f"Dashboard p99 ≤ 20 ms ({users:,} users on accountChanges + projectStatus, "
        f"{sizes.get('account_rate', 0):g} updates/s)",
        "account",
        "p99_ms",
        20.0,
        at_least=False,
        suffix=" ms",
    )
    add_ratio(
        f"Memory per idle accountChanges ≤ 1.3{X} a bare WebSocket",
        "memory",
        "kb_per_subscription",
        "ws-floor",
        {"field": "accountChanges"},
        1.3,
        at_least=False,
        suffix=" KB",
        baseline_match={"field": "projectStatus"},
    )
    if results.systems("storm"):
        add_ratio(
            f"Reconnect storm: subscriptions/s ≥ {cluster_report.STORM_GOAL:g}{X} the floor's",
            "storm",
            "subscriptions_per_s",
            "ws-floor",
            {},
            cluster_report.STORM_GOAL,
            at_least=True,
            suffix="/s",
            digits=0,
        )
    add_value(
        "generateStory ≥ 400/s",
        "generate",
        "throughput",
        400.0,
        at_least=True,
        suffix="/s",
        digits=0,
    )
    add_ratio(
        f"generateStory throughput no worse than 2{X} the floor",
        "generate",
        "throughput",
        "floor",
        {},
        0.5,
        at_least=True,
        suffix="/s",
        digits=0,
    )
    add_ratio(
        f"generateStory p99 no worse than 2{X} the floor",
        "generate",
        "p99_ms",
        "floor",
        {},
        2.0,
        at_least=False,
        suffix=" ms",
    )
    return table(["target", "Storyline", "baseline", "ratio", "per run", "goal", "verdict"], rows)


def fanout_rows(results: Results, scenario: str, **match: Any) -> list[list[str]]:
    rows = []
    for system in results.systems(scenario, **match):
        med = lambda key, system=system: results.med(scenario, system, key, **match)  # noqa: E731
        response = results.med(scenario, system, lambda row: row["response_ms"]["p99"], **match)
        response50 = results.med(scenario, system, lambda row: row["response_ms"]["p50"], **match)
        problems = []
        for key, label in (
            ("update_errors", "failed updates"),
            ("unsent", "updates not sent (server too slow)"),
            ("missing", "never got the final state"),
            ("stale", "ended on an older state"),
            ("dropped", "connections lost"),
            ("duplicates", "duplicate deliveries"),
        ):
            value = med(key)
            if value and not math.isnan(value):
                problems.append(f"{value:.0f} {label}")
        rows.append(
            [
                LABELS[system],
                fmt(med("deliveries_per_s"), 0),
                fmt(100 * med("delivered"), 1) + "%",
                fmt(med("p50_ms")),
                fmt(med("p99_ms")),
                f"{fmt(response50)} / {fmt(response)}",
                cores(med("cpu_server")),
                cores(med("cpu_load")),
                cores(med("cpu_db")),
                "; ".join(problems) or DASH,
            ]
        )
    return rows


FANOUT_HEADER = [
    "system",
    "deliveries/s",
    "delivered",
    "p50 ms",
    "p99 ms",
    "update call p50 / p99 ms",  # updateStatus over HTTP, or the SQL UPDATE
    "server CPU",
    "load CPU",
    "DB CPU",
    "problems (median per run)",
]


def hot_section(results: Results, sizes: dict[str, Any], has_plot: bool) -> str:
    headline = sizes["hot_watchers"][-1]
    parts = [
        f"**Latency phase:** the pipeline reports progress on the project {sizes['hot_rate']:g} "
        f"times a second for {sizes['hot_seconds']:g} s; every watcher should get every "
        f"update ({sizes['hot_rate'] * headline:,.0f} deliveries/s offered at {headline:,} "
        "watchers). Latency runs from the moment the pipeline sends `updateStatus` (Storyline, "
        "naive) or the row UPDATE whose trigger NOTIFYs (others), to receipt in the client.\n\n",
        table(FANOUT_HEADER, fanout_rows(results, "hot", phase="latency", watchers=headline)),
    ]
    if has_plot:
        parts.append(f"\n![latency against watchers]({PLOT})\n")
    parts.append(
        "\nLatency (p50 / p99 ms) against the number of watchers, same update rate "
        f"(counts below {headline:,} are measured in the first {sizes.get('sweep_runs', 1)} "
        "run(s) only, to keep the whole bench under 15 minutes):\n\n"
    )
    systems = results.systems("hot", phase="latency")
    header = ["watchers", *(LABELS[system] for system in systems)]
    rows = []
    for watchers in sizes["hot_watchers"]:
        row = [f"{watchers:,}"]
        for system in systems:
            if system == "pg-raw" and watchers != headline:
                row.append("")
                continue
            p50 = results.med("hot", system, "p50_ms", phase="latency", watchers=watchers)
            p99 = results.med("hot", system, "p99_ms", phase="latency", watchers=watchers)
            row.append(f"{fmt(p50)} / {fmt(p99)}")
        rows.append(row)
    parts.append(table(header, rows))
    offered = sizes["hot_capacity_rate"] * headline
    parts.append(
        f"\n**Capacity phase:** {sizes['hot_capacity_rate']:g} updates/s for "
        f"{sizes['hot_capacity_seconds']:g} s ({offered:,.0f} deliveries/s offered), more than "
        "these servers fan out on this machine; deliveries/s is what each one achieves, "
        "counted until the last delivery. The contract lets a server send a lagging client "
        "the newest state instead of the ones it missed, so *delivered* below 100% is allowed; "
        "a server that queues everything shows its backlog as latency instead.\n\n"
    )
    parts.append(table(FANOUT_HEADER, fanout_rows(results, "hot", phase="capacity")))
    ratio_rows = []
    for baseline in ("postgraphile", "ws-floor", "naive"):
        if baseline not in results.systems("hot"):
            continue
        ratio_rows.append(
            [
                LABELS[baseline],
                fmt(
                    results.ratio(
                        "hot", "deliveries_per_s", "storyline", baseline, {"phase": "capacity"}
                    ),
                    2,
                )
                + X,
                fmt(
                    results.ratio(
                        "hot",
                        "p99_ms",
                        "storyline",
                        baseline,
                        {"phase": "latency", "watchers": headline},
                    ),
                    2,
                )
                + X,
                fmt(
                    results.ratio(
                        "hot",
                        "p50_ms",
                        "storyline",
                        baseline,
                        {"phase": "latency", "watchers": headline},
                    ),
                    2,
                )
                + X,
            ]
        )
    if ratio_rows:
        parts.append("\nStoryline against each baseline (median of per-run ratios):\n\n")
        parts.append(
            table(
                ["baseline", "capacity deliveries/s", "p99 (latency phase)", "p50 (latency phase)"],
                ratio_rows,
            )
        )
    return "".join(parts)


def wide_section(results: Results, sizes: dict[str, Any]) -> str:
    parts = [
        f"{sizes['wide_rate']:g} updates/s for {sizes['wide_seconds']:g} s, spread over the "
        "projects in a shuffled order; each watcher is its project's owner (a user token). "
        "The window opens as soon as the last subscription is live (no warm-up) and lasts "
        "at least one keep-alive interval (20 s), so the pings fall inside every run.\n\n",
        table(FANOUT_HEADER, fanout_rows(results, "wide")),
    ]
    ratio_rows = []
    for baseline in ("postgraphile", "ws-floor", "naive"):
        if baseline in results.systems("wide"):
            ratio_rows.append(
                [
                    LABELS[baseline],
                    fmt(results.ratio("wide", "p50_ms", "storyline", baseline, {}), 2) + X,
                    fmt(results.ratio("wide", "p99_ms", "storyline", baseline, {}), 2) + X,
                ]
            )
    if ratio_rows:
        parts.append("\nStoryline against each baseline:\n\n")
        parts.append(table(["baseline", "p50", "p99"], ratio_rows))
    return "".join(parts)


def generate_section(results: Results, sizes: dict[str, Any]) -> str:
    rows = []
    for system in results.systems("generate"):
        med = lambda key, system=system: results.med("generate", system, key)  # noqa: E731
        rows.append(
            [
                LABELS[system],
                fmt(med("throughput"), 0),
                fmt(med("p50_ms")),
                fmt(med("p99_ms")),
                cores(med("cpu_server")),
                cores(med("cpu_db")),
                cores(med("cpu_upstream")),
                cores(med("cpu_load")),
                fmt(med("error_count"), 0),
            ]
        )
    parts = [
        f"Closed loop: {sizes['generate_concurrency']} clients, each sending the next "
        f"`generateStory` as soon as the last one answered, for {sizes['generate_seconds']:g} s "
        f"after {sizes['generate_warmup']:g} s of warm-up, spread over 32 users; the video "
        "service is a stand-in answering at once. The floor is a bare Starlette endpoint on "
        "asyncpg doing the same SQL (Storyline's own one-statement Tx1: PENDING row, "
        "conditional debit and ledger row; then the confirming UPDATE) and the same upstream "
        "call with aiohttp, without GraphQL. Both projects' rows NOTIFY through the same "
        "trigger, and PostgreSQL serialises the commits of notifying transactions.\n\n",
        table(
            [
                "system",
                "requests/s",
                "p50 ms",
                "p99 ms",
                "server CPU",
                "DB CPU",
                "upstream CPU",
                "load CPU",
                "errors",
            ],
            rows,
        ),
    ]
    if {"storyline", "floor"} <= set(results.systems("generate")):
        parts.append(
            "\nStoryline / floor: throughput "
            f"{fmt(results.ratio('generate', 'throughput', 'storyline', 'floor', {}), 2)}{X}, "
            f"p99 {fmt(results.ratio('generate', 'p99_ms', 'storyline', 'floor', {}), 2)}{X}.\n"
        )
    return "".join(parts)


def memory_section(results: Results) -> str:
    rows = []
    has_floor = "ws-floor" in results.systems("memory")
    for system in results.systems("memory"):
        for field in ("projectStatus", "accountChanges"):
            if not results.select("memory", system, field=field):
                continue
            med = lambda key, system=system, field=field: results.med(  # noqa: E731
                "memory", system, key, field=field
            )
            ratio = (
                results.ratio(
                    "memory",
                    "kb_per_subscription",
                    system,
                    "ws-floor",
                    {"field": field},
                    {"field": "projectStatus"},
                )
                if has_floor
                else math.nan
            )
            rows.append(
                [
                    LABELS[system],
                    f"`{field}`",
                    fmt(med("kb_per_subscription")),
                    fmt(ratio, 2) + X,
                    f"{fmt(med('rss_before_mb'), 0)} → {fmt(med('rss_after_mb'), 0)}",
                    fmt(med("subscriptions"), 0),
                    fmt(med("failed"), 0),
                ]
            )
    return (
        "Resident memory of the server process (RSS) before and after opening the "
        "subscriptions, divided by their number. Each subscription is a WebSocket connection "
        "(graphql-transport-ws, one operation) from a client offering permessage-deflate; "
        "100 warm-up subscriptions of the same kind are opened before the first reading. "
        "`projectStatus` watches the subscriber's own project. Storyline's `accountChanges` "
        "row is read on the dashboard scenario's server (section 5) as its users' "
        "connections open, before their `projectStatus` is added: each watches its own "
        "account (a balance, one project). The bare WebSocket server (a `projectStatus` "
        "look-alike: it registers the socket under the project id) runs under the same "
        "uvicorn settings as `storyline serve`; every row is compared with it, in the same "
        "run.\n\n"
        + table(
            [
                "system",
                "subscription",
                "KB per subscription",
                "vs bare WebSocket",
                "RSS MB",
                "subscriptions",
                "failed",
            ],
            rows,
        )
    )


def account_section(results: Results, sizes: dict[str, Any]) -> str:
    rate = sizes["account_rate"]
    parts = [
        f"Each of {sizes['account_users']:,} users has one project in PROCESSING and a "
        "balance, and one WebSocket (as the editor page opens one per token) carrying two "
        "subscriptions: `accountChanges` (BalanceChange and ProjectStatusEvent fragments, "
        "`__typename`), then `projectStatus` on that project. The pipeline reports progress "
        f"at {rate:g} updates/s for {sizes['account_seconds']:g} s, spread over the projects "
        "in a shuffled order; each update is due on both subscriptions of its owner "
        f"({2 * rate:g} deliveries/s offered). Latency runs from the moment `updateStatus` "
        "is sent to receipt; *lost* counts deliveries due that never came.\n\n",
        table(FANOUT_HEADER, fanout_rows(results, "account")),
    ]
    rows = []
    for system in results.systems("account"):
        for field in ("projectStatus", "accountChanges"):
            med = lambda key, field=field, system=system: results.med(  # noqa: E731
                "account",
                system,
                lambda row: (row.get("by_field") or {}).get(field, {}).get(key, math.nan),
            )
            rows.append(
                [
                    LABELS[system],
                    f"`{field}`",
                    fmt(med("deliveries"), 0),
                    fmt(med("p50_ms")),
                    fmt(med("p99_ms")),
                    fmt(med("max_ms")),
                    fmt(med("lost"), 0),
                    fmt(med("duplicates"), 0),
                ]
            )
    if rows:
        parts.append("\nEach subscription's deliveries (median per run):\n\n")
        parts.append(
            table(
                [
                    "system",
                    "subscription",
                    "deliveries",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "lost",
                    "duplicates",
                ],
                rows,
            )
        )
    return "".join(parts)


def profile_section(path: Path, during: str, scenario: str) -> str:
    if not path.exists():
        return f"No profile in this run (`--no-profile`, or the {scenario} scenario was not run).\n"
    keep: list[str] = []
    rows_left = -1  # rows still to copy from the current table; -1: copying prose
    for line in path.read_text().splitlines():
        if line.startswith("Top") and "by inclusive time" in line:
            break
        if line.startswith("Self time by package"):
            rows_left = 12
        elif line.startswith("Top") and "by self time" in line:
            rows_left = 17  # its column header, then 16 functions
        elif rows_left == 0:
            if line.strip() == "":
                rows_left = -1
                keep.append("")
            continue
        elif rows_left > 0:
            rows_left -= 1
        keep.append(line)
    return (
        f"From [`{path.name}`]({path.name}) (pyinstrument, sampling the Storyline process only "
        f"during {during}; the full call tree is in the file):\n\n"
        "```\n" + "\n".join(keep).rstrip() + "\n```\n"
    )


RUNNING = """```sh
make bench                                   # the full run (25 minutes or so here), rewrites docs/
.venv/bin/python -m bench --quick            # small sizes, one run; report in bench/.cache/quick/
.venv/bin/python -m bench --scenarios hot --systems storyline,postgraphile --runs 1 --out /tmp/b
.venv/bin/python -m bench --report-only bench/.cache/results/LATEST.json   # re-render the page
.venv/bin/python -m bench --scenarios storm --runs 1 --no-profile    # on demand: reconnect storm
.venv/bin/python -m bench --scenarios ceiling --runs 1 --no-profile  # on demand: one PostgreSQL's
                                             # ceiling (--ceiling-rates 100,200,400,800)
.venv/bin/python -m bench --help             # every size: watchers, rates, durations, processes
.venv/bin/python -m bench.statements         # generateStory's SQL: SQLAlchemy vs driver vs asyncpg
.venv/bin/python -m bench.operations         # one mutation in process: CPU per call, and what
                                             # it leaves to the cycle collector (--operation)
```

Needs Python (the venv) and, for the PostGraphile baseline, Node.js with npm (PostGraphile is
installed on first use into `bench/.cache/postgraphile/`, which git ignores). Raw results of
every run are kept in `bench/.cache/results/`, server logs in `bench/.cache/logs/`.
"""


def notes_section(results: Results) -> str:
    notes = []
    saturated = []
    for scenario, match in (
        ("hot", {"phase": "latency"}),
        ("hot", {"phase": "capacity"}),
        ("wide", {}),
        ("account", {}),
        ("generate", {}),
    ):
        cpu = results.med(scenario, "storyline", "cpu_server", **match)
        if cpu >= 0.9:
            label = f"{scenario} ({match['phase']})" if match else scenario
            saturated.append(f"{label}: {cpu:.2f}")
    if saturated:
        notes.append(
            "Storyline's server process was CPU-bound (one core is its ceiling: one uvicorn "
            "worker) in " + "; ".join(saturated) + ". Its latency there is queueing."
        )
    for system in ORDER:
        samples: dict[str, int] = {}
        for row in results.rows:
            if row["system"] != system:
                continue
            errors = list(row.get("errors") or [])
            errors += list((row.get("connect") or {}).get("errors") or [])
            for error in errors:
                key = " ".join(str(error).split())[:160]
                samples[key] = samples.get(key, 0) + 1
        if samples:
            listed = "; ".join(f"`{text}`" for text in list(samples)[:3])
            notes.append(f"{LABELS[system]}: errors seen (first of each kind): {listed}.")
    notes.append(
        "The naive stack's failures are broadcaster's stock backend at work: concurrent "
        "`LISTEN`s and `pg_notify`s on its one shared connection fail with *another operation "
        "is in progress* (a failed update was committed but never announced), and the "
        "subscribe race leaves a `KeyError`; its clients retry a failed subscription once."
    )
    notes.append(
        "The capacity phase loads the clients too: every delivery costs the load processes "
        "CPU on the same two cores, so a server that delivers more also competes with more "
        "client work. This is the same for every server, and the reason ratios, not absolute "
        "numbers, carry the targets."
    )
    notes.append(
        "In the profile, the self time of `run (asyncio/runners.py)` is uvloop's C event loop "
        "(mostly waiting in epoll), not Python code, so it is marked *idle* and *busy%* gives "
        "each function's share of the time spent running Python; a socket write shows up in "
        "the Python frame that called it (uvloop writes at once). The profiler's window "
        "covers only the steady state after the watchers subscribed."
    )
    return "".join(f"- {note}\n" for note in notes)


def method_section(sizes: dict[str, Any]) -> str:
    return f"""- **Processes.** One PostgreSQL 16 (pgserver) started by the bench in a temporary
  directory, one database per system (Storyline's migrations in each). Every server runs as
  its own process, started fresh for each scenario: `storyline serve` (uvicorn, one worker),
  `python -m bench.naive`, `python -m bench.floor`, `node bench/.cache/postgraphile/server.js`.
  Load runs in {sizes["load_processes"]} watcher processes (`python -m bench.load`) plus one
  driver process (`python -m bench.driver`, the pipeline or the generateStory clients).
- **Clients behave like browsers:** every watcher is its own WebSocket connection speaking
  graphql-transport-ws with one subscription (two in the dashboard scenario), offering
  `permessage-deflate; client_max_window_bits` (Storyline and the floor decline it, as
  configured; the naive stack's uvicorn defaults accept it; PostGraphile's `ws` server
  declines by default). The client is a small RFC 6455 implementation on asyncio (uvloop)
  so that a delivery costs the load process a few microseconds, not the server's budget.
- **Latency** is wall clock (`time.time_ns`, one machine, one clock): the pipeline puts
  `b<seq>:<send time>` in the update's `stage`, the client subtracts on receipt. Storyline
  and the naive stack are driven through `updateStatus` over HTTP (keep-alive, pipeline
  token), so their latency includes the mutation; the floor, pg-raw and PostGraphile are
  driven by the same row UPDATE in SQL whose trigger NOTIFYs, timed from when it is sent.
  The pipeline sends at a fixed rate (open loop) from up to 32 connections.
- **PostGraphile** v4 with `@graphile/pg-pubsub` and `simpleSubscriptions`, installed by the
  bench with npm into `bench/.cache/`. A trigger in its database NOTIFYs
  `postgraphile:<project id>` with the event as `__node__`; clients subscribe to
  `listen(topic: <project id>) {{ relatedNodeId }}`, which carries the event, so PostGraphile
  relays each change without a query per subscriber (its fastest configuration; selecting
  `relatedNode` would add a query per subscriber per event).
- **The naive stack** (`bench/naive/`): strawberry + broadcaster's stock Postgres backend
  (one LISTEN channel per project, on the connection also used for `pg_notify`), the ORM,
  publish after commit, uvicorn's defaults. Its known defects show up as *failed updates*
  ("another operation is in progress") and as subscriptions that fail and are retried.
- **Watchers.** Hot: distinct admin principals (Storyline limits one user to 200 live
  subscriptions). Wide and memory: every project has its own owner, who watches it.
- **The editors' dashboard** (scenario `account`, Storyline only: no baseline has
  `accountChanges`). {sizes.get("account_users", 0):,} users, each with one PROCESSING
  project and a balance from one GRANT entry, each one WebSocket carrying two
  subscriptions: `accountChanges` (both union members' fragments and `__typename`) and
  `projectStatus` on the user's project. One connection, not two,
  because the editor page opens one per token and multiplexes its subscriptions on it (a
  graphql-transport-ws client's usual way); it also puts both deliveries of an update on
  one socket, one after the other, as a browser sees them. Each connection subscribes to
  `accountChanges` first (the dashboard), then, once all are open, to `projectStatus`
  (the project the editor opens). The pipeline sends
  `updateStatus` progress reports at {sizes.get("account_rate", 0):g}/s for
  {sizes.get("account_seconds", 0):g} s (a keep-alive interval: its pings fall inside),
  round-robin over the projects in a shuffled order; every report is due on both
  subscriptions. Latency (send → receipt) is reported for each subscription and for both
  together (the target's p99); *lost* is deliveries due minus distinct deliveries
  received, *missing* the subscriptions that never got their project's final state,
  *duplicates* a version received twice. CPU as in the other scenarios.
- **Memory per idle `accountChanges`:** the memory scenario's method, read on the
  dashboard scenario's server while its connections open with `accountChanges` only
  (before `projectStatus` is added): RSS after 100 warm-up ones, then after the
  {sizes.get("account_users", 0):,} users' connections, each one `accountChanges` of its own
  user, divided by their number; compared with the bare WebSocket server's per-subscription
  figure from the memory scenario of the same run (whose count,
  {sizes["memory_subscriptions"]:,}, is larger: a bare WebSocket's cost per connection
  does not depend on the count). Measured there, not on a server of its own, to keep
  `make bench` short.
- **CPU** is CPU-seconds per wall-clock second over the measurement (1.00 = one core):
  the server process and all PostgreSQL processes (psutil `cpu_times` deltas), and the load
  processes, watchers + driver (each reports its own `os.times` delta, the same counters).
- **Servers log at WARNING** (`--server-log-level`), so the numbers measure the code
  paths, not log output.
- **Sizes** (`python -m bench --help` to change them; `--quick` for development):
  {", ".join(f"{key}={value}" for key, value in sizes.items())}.
"""


def plot(results: Results, sizes: dict[str, Any], path: Path) -> bool:
    systems = results.systems("hot", phase="latency")
    if not systems:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    figure, (left, right) = plt.subplots(
        1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]}
    )
    points = sizes["hot_watchers"]
    for system in systems:
        color = COLORS.get(system, "black")
        if system == "pg-raw":
            for key, style in (("p50_ms", ":"), ("p99_ms", "-.")):
                value = results.med("hot", system, key, phase="latency")
                left.axhline(value, color=color, linestyle=style, linewidth=1)
            left.text(
                points[0],
                results.med("hot", system, "p99_ms", phase="latency"),
                " NOTIFY→LISTEN p99",
                color=color,
                fontsize=8,
                va="bottom",
            )
            continue
        p50 = [results.med("hot", system, "p50_ms", phase="latency", watchers=w) for w in points]
        p99 = [results.med("hot", system, "p99_ms", phase="latency", watchers=w) for w in points]
        left.plot(points, p99, marker="s", color=color, label=f"{LABELS[system]} p99")
        left.plot(
            points, p50, marker="o", color=color, linestyle="--", label=f"{LABELS[system]} p50"
        )
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xticks(points)
    left.set_xticklabels([f"{point:,}" for point in points])
    left.xaxis.set_minor_formatter(NullFormatter())
    left.set_xlabel("watchers of one project")
    left.set_ylabel("commit → receipt latency (ms)")
    left.set_title(
        f"Hot fan-out at {sizes['hot_rate']:g} updates/s (median of {len(results.runs)} run(s))"
    )
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7, loc="upper left")

    capacity = results.systems("hot", phase="capacity")
    values = [results.med("hot", s, "deliveries_per_s", phase="capacity") for s in capacity]
    right.bar(range(len(capacity)), values, color=[COLORS.get(s, "black") for s in capacity])
    right.set_xticks(range(len(capacity)))
    right.set_xticklabels(
        [LABELS[s].split(":")[0].split(" (")[0] for s in capacity], rotation=20, fontsize=8
    )
    offered = sizes["hot_capacity_rate"] * points[-1]
    right.axhline(offered, color="black", linestyle=":", linewidth=1)
    right.text(-0.4, offered, "offered", fontsize=8, va="bottom")
    right.set_ylabel("deliveries per second")
    right.set_title(f"Capacity at {points[-1]:,} watchers")
    right.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
