"""``python -m bench`` (``make bench``): start everything, run every scenario, write the report.

python -m bench                       the full run: 3 runs, medians, docs/ rewritten
python -m bench --quick               small sizes, 1 run, report in bench/.cache/quick/
python -m bench --scenarios hot,wide --systems storyline,postgraphile --runs 1
python -m bench --scenarios account --systems storyline --runs 1 --no-profile
python -m bench --scenarios storm --runs 1 --no-profile     # on demand: reconnect storm
python -m bench --scenarios ceiling --runs 1 --no-profile   # on demand: one PostgreSQL's ceiling
python -m bench --report-only bench/.cache/results/LATEST.json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import platform
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT
from bench.report import write_report
from bench.scenarios import (
    CACHE,
    FANOUT_SYSTEMS,
    GENERATE_SYSTEMS,
    ON_DEMAND,
    QUICK,
    SCENARIOS,
    Bench,
    Sizes,
    log,
)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part]


def _names(allowed: list[str]) -> Any:
    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        unknown = sorted(set(names) - set(allowed))
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(unknown)}; choose from {allowed}"
            )
        return names

    return parse


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (development)")
    parser.add_argument("--runs", type=int, help="runs per scenario (medians are reported)")
    parser.add_argument(
        "--scenarios",
        type=_names(SCENARIOS + ON_DEMAND),
        default=SCENARIOS,
        help=f"default: {','.join(SCENARIOS)}; on demand only: {','.join(ON_DEMAND)}",
    )
    parser.add_argument(
        "--systems",
        type=_names(sorted({*FANOUT_SYSTEMS, *GENERATE_SYSTEMS})),
        default=None,
        help="restrict to these systems (default: all)",
    )
    parser.add_argument(
        "--hot-watchers", type=_ints, help="watcher counts, ascending (last: target)"
    )
    parser.add_argument("--hot-rate", type=float, help="updateStatus per second, hot fan-out")
    parser.add_argument("--hot-seconds", type=float)
    parser.add_argument("--hot-capacity-rate", type=float, help="updates/s, capacity phase")
    parser.add_argument("--hot-capacity-seconds", type=float)
    parser.add_argument("--wide-watchers", type=int)
    parser.add_argument("--wide-rate", type=float)
    parser.add_argument("--wide-seconds", type=float)
    parser.add_argument("--account-users", type=int, help="account scenario: editors")
    parser.add_argument("--account-rate", type=float, help="updateStatus per second, account")
    parser.add_argument("--account-seconds", type=float)
    parser.add_argument("--memory-subscriptions", type=int)
    parser.add_argument("--storm-watchers", type=int, help="storm: watchers on the killed one")
    parser.add_argument("--storm-concurrency", type=int, help="storm: handshakes in flight")
    parser.add_argument("--ceiling-watchers", type=int)
    parser.add_argument("--ceiling-rates", type=_floats, help="updates/s ladder, ascending")
    parser.add_argument("--ceiling-seconds", type=float, help="seconds per ladder step")
    parser.add_argument("--ceiling-p99-ms", type=float, help="the ladder stops past this p99")
    parser.add_argument("--generate-concurrency", type=int)
    parser.add_argument("--generate-seconds", type=float)
    parser.add_argument("--load-processes", type=int)
    parser.add_argument("--sweep-runs", type=int, help="runs that measure every watcher count")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled pass")
    parser.add_argument("--server-log-level", default="warning")
    parser.add_argument("--out", type=Path, help="report directory (default docs/, or cache)")
    parser.add_argument("--report-only", type=Path, help="rewrite the report from a results file")
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = dataclasses.replace(QUICK) if args.quick else Sizes()
    overrides = {
        "runs": args.runs,
        "hot_watchers": args.hot_watchers,
        "hot_rate": args.hot_rate,
        "hot_seconds": args.hot_seconds,
        "hot_capacity_rate": args.hot_capacity_rate,
        "hot_capacity_seconds": args.hot_capacity_seconds,
        "wide_watchers": args.wide_watchers,
        "wide_rate": args.wide_rate,
        "wide_seconds": args.wide_seconds,
        "account_users": args.account_users,
        "account_rate": args.account_rate,
        "account_seconds": args.account_seconds,
        "memory_subscriptions": args.memory_subscriptions,
        "storm_watchers": args.storm_watchers,
        "storm_concurrency": args.storm_concurrency,
        "ceiling_watchers": args.ceiling_watchers,
        "ceiling_rates": args.ceiling_rates,
        "ceiling_seconds": args.ceiling_seconds,
        "ceiling_p99_ms": args.ceiling_p99_ms,
        "generate_concurrency": args.generate_concurrency,
        "generate_seconds": args.generate_seconds,
        "load_processes": args.load_processes,
        "sweep_runs": args.sweep_runs,
    }
    return dataclasses.replace(sizes, **{k: v for k, v in overrides.items() if v is not None})


def raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in cpuinfo.splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total_kb = next(
        (int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal")), 0
    )
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)  # noqa: S607
    import os

    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(total_kb / 2**20, 1),
        "python": platform.python_version(),
        "node": node.stdout.strip() or "absent",
        "kernel": platform.release(),
        "file_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "python_loop_s": python_loop_seconds(),
    }


def python_loop_seconds() -> float:
    """The best of three timings of 10 million additions in a Python loop: how fast this
    box runs Python today, to compare runs made on different days (the same kind of machine
    has differed by a factor of four here)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for number in range(10_000_000):
            total += number
        best = min(best, time.perf_counter() - started)
    return round(best, 2)


async def main_async(args: argparse.Namespace) -> int:
    sizes = sizes_from(args)
    out = args.out or (CACHE / "quick" if args.quick else ROOT / "docs")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logs = CACHE / "logs" / stamp
    results_dir = CACHE / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    # SIGTERM (a CI timeout, kill) cancels the run, so every process still gets stopped.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="slbench-") as work:
        bench = Bench(
            sizes=sizes,
            scenarios=args.scenarios,
            systems=args.systems,
            work=Path(work),
            logs=logs,
            server_log_level=args.server_log_level,
            profile_dir=None if args.no_profile else out,
        )
        try:
            log(f"logs in {logs}")
            await bench.setup()
            await bench.run()
        finally:
            await bench.teardown()
    document = {
        "command": "python -m bench " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "make bench",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "duration_s": time.time() - started,
        "machine": {**machine(), **bench.meta},
        "sizes": bench.sizes_dict(),
        "scenarios": args.scenarios,
        "results": bench.results,
    }
    results = results_dir / f"{stamp}.json"
    results.write_text(json.dumps(document, indent=1))
    (results_dir / "LATEST.json").write_text(json.dumps(document, indent=1))
    write_report(document, out)
    log(
        f"done in {document['duration_s']:.0f} s; results {results}; report {out / 'benchmarks.md'}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.report_only is not None:
        document = json.loads(args.report_only.read_text())
        write_report(document, args.out or ROOT / "docs")
        return 0
    raise_file_limit()
    try:
        return asyncio.run(main_async(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted; every process it started has been stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
