"""``python -m chaos`` (``make chaos``): one run, its report in docs/reliability.md.

python -m chaos                      10 minutes, the report rewritten in docs/
python -m chaos --seconds 90 --out /tmp/chaos   a short run, its report elsewhere
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import ROOT, code_version

from chaos.faults import KINDS
from chaos.report import write_report
from chaos.run import Options, Run, say

CACHE = ROOT / "chaos" / ".cache"


def kinds(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip() not in ("", "none"))
    unknown = sorted(set(chosen) - set(KINDS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown: {', '.join(unknown)}; choose from {KINDS}")
    return chosen


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600, help="of load, warm-up included")
    parser.add_argument("--warmup", type=float, help="seconds of load before the faults")
    parser.add_argument("--users", type=int, default=Options.users)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument(
        "--faults",
        type=kinds,
        default=KINDS,
        help=f"the kinds to inject, comma-separated, or none (default: all of {','.join(KINDS)})",
    )
    parser.add_argument("--no-balancer", action="store_true", help="clients spread themselves")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the report goes")
    return parser.parse_args(argv)


async def main_async(args: argparse.Namespace) -> int:
    warmup = args.warmup if args.warmup is not None else min(30.0, args.seconds / 6)
    options = Options(
        seconds=args.seconds,
        warmup=warmup,
        users=args.users,
        seed=args.seed,
        kinds=args.faults,
        balancer=not args.no_balancer,
    )
    logs = CACHE / "logs" / time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="slchaos-") as work:
        result = await Run(options, Path(work), logs).execute()
    command = "python -m chaos " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "make chaos"
    report = write_report(result, args.out, command=command, code=code_version(), plot=True)
    for check in result.checks:
        say(f"{'PASS' if check.passed else 'FAIL'} {check.name}: {check.detail}")
        for line in check.listing:
            say(f"    {line}")
    for error in result.harness_errors:
        say(f"HARNESS {error}")
    say(f"report {report}; instance logs in {logs}")
    return 0 if result.passed else 1


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
