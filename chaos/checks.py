"""The verdicts of a run, each a named check that passes or fails with what it found."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from tests.support.books import money_violations

from chaos.cluster import Timeouts
from chaos.logs import Line, explain
from chaos.record import FaultRecord, Recorder
from chaos.watchers import TERMINAL, AccountWatcher, Watcher

LISTED = 20  # offending items shown per check
MEMORY_DRIFT = 0.10


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    listing: list[str] = field(default_factory=list)


def check(name: str, problems: list[str], detail: str) -> Check:
    return Check(name, not problems, detail, problems[:LISTED])


async def money(database_url: str) -> Check:
    broken = await money_violations(database_url)
    listing = [f"{name}: {rows}" for name, rows in broken.items()]
    return check("the money invariants hold over every account", listing, "6 invariant queries")


async def projects(connection: asyncpg.Connection, timeouts: Timeouts) -> Check:
    rows = await connection.fetch(
        """
        SELECT id::text, status,
               extract(epoch FROM now() - updated_at) AS quiet,
               extract(epoch FROM now() - coalesce(last_report_at, updated_at)) AS unheard
        FROM projects
        """
    )
    problems = []
    for row in rows:
        if row["status"] == "PENDING" and row["quiet"] > timeouts.pending:
            problems.append(f"{row['id']} PENDING for {row['quiet']:.1f} s")
        if row["status"] == "PROCESSING" and row["unheard"] > timeouts.processing:
            problems.append(f"{row['id']} PROCESSING, unheard for {row['unheard']:.1f} s")
    statuses = Counter(row["status"] for row in rows)
    detail = f"{len(rows)} projects: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    return check(
        "every project is terminal, or PROCESSING and heard from within its timeout;"
        " none PENDING past its timeout",
        problems,
        detail,
    )


async def idempotency(
    connection: asyncpg.Connection, keys: dict[tuple[str, str], set[str]]
) -> Check:
    rows = await connection.fetch(
        "SELECT user_id, idempotency_key, array_agg(id::text) AS ids FROM projects"
        " WHERE idempotency_key IS NOT NULL GROUP BY user_id, idempotency_key"
    )
    stored = {(row["user_id"], row["idempotency_key"]): set(row["ids"]) for row in rows}
    problems = [
        f"{user} {key}: answered {sorted(ids)}, stored {sorted(stored.get((user, key), ()))}"
        for (user, key), ids in keys.items()
        if len(ids) != 1 or stored.get((user, key)) != ids
    ]
    problems += [f"{key}: {sorted(ids)}" for key, ids in stored.items() if len(ids) > 1]
    retried = sum(1 for ids in keys.values() if ids)
    return check(
        "an idempotency key makes one project, whatever the retries",
        problems,
        f"{retried} keys answered with a project",
    )


def ended_before_its_job_id(
    watcher: Watcher, holds: tuple[int, str], stored: tuple[int, str] | None, *, confirmed: bool
) -> bool:
    """Whether a finished projectStatus watcher's terminal state is the stored one but for
    the job id recorded after it. The server completes a projectStatus subscription with
    the terminal state it sends (the contract). A terminal row changes once more only when
    generateStory hears the video service's job id after the project ended (the pipeline
    reported a failure first, or the sweeper failed it as never confirmed): the id is
    recorded, version +1, same status; updateStatus and the sweeper change nothing of a
    terminal project. ``confirmed``: the stored row has a job id."""
    return (
        confirmed
        and watcher.finished
        and not isinstance(watcher, AccountWatcher)  # a dashboard is sent that change too
        and stored is not None
        and holds[1] in TERMINAL
        and stored[1] == holds[1]
        and stored[0] > holds[0]
    )


async def watchers(connection: asyncpg.Connection, every: list[Watcher]) -> list[Check]:
    """What every watcher still connected (or finished) holds, against the database."""
    rows = await connection.fetch(
        "SELECT id::text, user_id, status, version, extract(epoch FROM updated_at) AS at,"
        " external_id IS NOT NULL AS confirmed FROM projects"
    )
    current = {row["id"]: (row["version"], row["status"]) for row in rows}
    confirmed = {row["id"] for row in rows if row["confirmed"]}
    balances = dict(await connection.fetch("SELECT user_id, balance FROM accounts"))
    judged = [w for w in every if w.connected or w.finished]
    stale, lost, money_off = [], [], []
    for watcher in judged:
        for project_id, holds in watcher.projects.items():
            stored = current.get(project_id)
            if holds != stored and not ended_before_its_job_id(
                watcher, holds, stored, confirmed=project_id in confirmed
            ):
                stale.append(f"{watcher.user} {project_id}: holds {holds}, is {stored}")
        if isinstance(watcher, AccountWatcher):
            assert watcher.subscribed is not None
            lost += [
                f"{watcher.user} never heard of {row['id']} (v{row['version']} {row['status']})"
                for row in rows
                if row["user_id"] == watcher.user
                and row["at"] > watcher.subscribed
                and row["id"] not in watcher.projects
            ]
            if watcher.balance != balances.get(watcher.user):
                money_off.append(
                    f"{watcher.user}: holds {watcher.balance}, is {balances.get(watcher.user)}"
                )
    states = Counter(w.state for w in every)
    held = sum(len(w.projects) for w in judged)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    disorder = [line for w in every for line in w.disorder]
    dashboards = [w for w in every if isinstance(w, AccountWatcher)]
    away = [w.user for w in dashboards if not w.connected]
    return [
        check(
            "every watcher still connected holds each project's state as stored"
            " (nothing lost, nothing stale)",
            stale + lost,
            f"{len(judged)} watchers judged ({summary}), {held} project states",
        ),
        check(
            "every dashboard still connected holds the balance as stored",
            money_off,
            f"{sum(1 for w in dashboards if w.connected)} dashboards",
        ),
        check(
            "on each connection, versions only rise and balances never go back",
            disorder,
            f"{sum(w.connections for w in every)} subscriptions served",
        ),
        check(
            "every dashboard is connected again at the end", away, f"{len(dashboards)} dashboards"
        ),
    ]


def answers(recorder: Recorder, lines: list[Line], end: float) -> list[Check]:
    """INTERNAL_SERVER_ERROR answers, each explained by the line its instance logged under
    the request's id; and every other answer the contract does not give."""
    logged = defaultdict(list)
    for line in lines:
        logged[line.request_id].append(line)
    explained: Counter[str] = Counter()
    problems = []
    for operation, rid, moment in recorder.internal:
        reasons = [explain(line, recorder.faults, end) for line in logged.get(rid, [])]
        reason = next((r for r in reasons if r is not None), None)
        if reason is None:
            cause = logged[rid][0].text if logged.get(rid) else "nothing logged under its id"
            problems.append(f"{stamp(moment)} {operation} {rid}: {cause}")
        else:
            explained[reason] += 1
    total = sum(recorder.outcomes.values())
    return [
        check(
            "no INTERNAL_SERVER_ERROR answered that an injected fault does not explain"
            " (each matched to what its instance logged under the request's id)",
            problems,
            f"{len(recorder.internal)} of {total} answers; explained: {tally(explained)}",
        ),
        check(
            "every other answer is one the contract gives to what was asked",
            recorder.unexpected,
            f"{total} answers",
        ),
    ]


def logged(
    lines: list[Line], unreadable: list[str], faults: list[FaultRecord], end: float
) -> Check:
    explained: Counter[str] = Counter()
    problems = []
    for line in lines:
        reason = explain(line, faults, end)
        if reason is None:
            problems.append(str(line))
        else:
            explained[reason] += 1
    return check(
        "no ERROR logged that an injected fault does not explain",
        problems + [f"not JSON: {line}" for line in unreadable],
        f"{len(lines)} ERROR lines; explained: {tally(explained)}",
    )


def tally(counts: Counter[str]) -> str:
    return "; ".join(f"{n} x {reason}" for reason, n in counts.most_common()) or "none"


def memory(before: dict[str, int], after: dict[str, int]) -> Check:
    problems, shown = [], []
    for name, rss in after.items():
        drift = rss / before[name] - 1
        shown.append(f"{name} {before[name] / 2**20:.0f} → {rss / 2**20:.0f} MB ({drift:+.1%})")
        if abs(drift) > MEMORY_DRIFT:
            problems.append(shown[-1])
    return check(
        f"RSS of the instances that lived through the run within {MEMORY_DRIFT:.0%} of"
        " after warm-up",
        problems if after else ["no instance lived through the run"],
        "; ".join(shown),
    )


def tasks(idle: dict[str, float], end: dict[str, dict[str, float]]) -> Check:
    problems, shown = [], []
    for name, samples in end.items():
        count = samples.get("storyline_asyncio_tasks", -1)
        sockets = samples.get("storyline_websocket_connections", -1)
        live = samples.get("storyline_subscriptions", -1)
        shown.append(f"{name} {idle[name]:.0f} → {count:.0f} tasks")
        if count > idle[name] or sockets or live:
            problems.append(
                f"{name}: {count:.0f} tasks (idle at start: {idle[name]:.0f}),"
                f" {sockets:.0f} websockets, {live:.0f} subscriptions"
            )
    return check(
        "no leaked tasks: once the clients have gone, each instance is back to its idle count",
        problems,
        "; ".join(shown),
    )


def stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment).strftime("%H:%M:%S")
