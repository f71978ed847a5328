"""``storyline`` under pyinstrument: SIGUSR1 starts sampling, SIGUSR2 stops and writes a report.

Run: ``python -m bench.profiled --out FILE -- serve --host H --port P --no-migrate``.
The report has flat tables (self and inclusive time per function, self time per package)
and pyinstrument's call tree, so the window can be limited to the steady state.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from pyinstrument import Profiler
from pyinstrument.renderers import ConsoleRenderer

TOP = 30
IDLE = (
    "run (asyncio/runners.py",  # uvloop: the whole C loop runs inside this frame
    "run_forever (asyncio/base_events.py",
    "select (selectors.py",
    "epoll.poll (",  # the stdlib loop's wait
)


def _label(frame: Any) -> str:
    return f"{frame.function} ({frame.file_path_short}:{frame.line_no})"


def _package(frame: Any) -> str:
    path = str(frame.file_path or "")
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            if marker == "/lib/python3":
                return "stdlib:" + tail.split("/")[1].removesuffix(".py")
            return tail.split("/")[0].removesuffix(".py")
    return path or "?"


def _package_of_label(label: str) -> str:
    """The package an idle label's self time was counted under."""
    if "asyncio/" in label:
        return "stdlib:asyncio"
    return "stdlib:selectors" if "selectors.py" in label else "<built-in>"


def flat_report(root: Any) -> str:
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    package_time: Counter[str] = Counter()

    def visit(frame: Any, active: frozenset[str]) -> None:
        label = _label(frame)
        children = [child for child in frame.children if not child.is_synthetic]
        own = frame.time - sum(child.time for child in children)
        self_time[label] += own
        package_time[_package(frame)] += own
        if label not in active:
            total_time[label] += frame.time
        for child in children:
            visit(child, active | {label})

    visit(root, frozenset())
    whole = root.time or 1.0
    # The loop's own frame holds the time spent outside Python: uvloop's C code, mostly
    # waiting in epoll. What is left is the time Python code kept the process busy.
    idle_labels = [label for label in self_time if label.startswith(IDLE)]
    idle = sum(self_time[label] for label in idle_labels)
    busy = max(whole - idle, 1e-9)
    package_time["(event loop: waiting, uvloop's C code)"] = idle
    for label in idle_labels:
        package_time[_package_of_label(label)] -= self_time[label]

    def share(label: str, seconds: float) -> str:
        return "  idle" if label in idle_labels else f"{100 * seconds / busy:6.2f}"

    lines = [
        f"Sampled time: {whole:.2f} s, of which {idle:.2f} s in the event loop itself "
        f"(waiting in epoll; with uvloop also its C code) and {busy:.2f} s running Python.",
        "self% and total% are shares of the sampled time; busy% is self time as a share of",
        "the time running Python code.",
        "",
        "Self time by package (where the CPU went):      % of sampled   % of busy",
    ]
    lines += [
        f"  {100 * seconds / whole:6.2f}%  "
        + ("   idle" if name.startswith("(event loop") else f"{100 * seconds / busy:6.2f}%")
        + f"  {name}"
        for name, seconds in package_time.most_common()
    ][:TOP]
    lines += ["", f"Top {TOP} functions by self time:", "   self%   busy%  total%  function"]
    lines += [
        f"  {100 * seconds / whole:6.2f}  {share(label, seconds)}  "
        f"{100 * total_time[label] / whole:6.2f}  {label}"
        for label, seconds in self_time.most_common(TOP)
    ]
    lines += ["", f"Top {TOP} functions by inclusive time:", "  total%   self%  function"]
    lines += [
        f"  {100 * seconds / whole:6.2f}  {100 * self_time[label] / whole:6.2f}  {label}"
        for label, seconds in total_time.most_common(TOP)
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profiled")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = [arg for arg in args.argv if arg != "--"]
    profiler = Profiler(interval=0.001, async_mode="disabled")
    started: list[float] = []

    def start(signum: int, frame: FrameType | None) -> None:
        if not profiler.is_running:
            started.append(time.monotonic())
            profiler.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        if not profiler.is_running:
            return
        session = profiler.stop()
        window = time.monotonic() - started[-1]
        root = session.root_frame()
        tree = ConsoleRenderer(
            unicode=False, color=False, show_all=False, time="percent_of_total"
        ).render(session)
        header = (
            f"pyinstrument profile of `storyline {' '.join(argv)}`\n"
            f"window: {window:.1f} s wall clock, {session.cpu_time:.1f} s CPU "
            f"({session.sample_count} samples, 1 ms interval)\n\n"
        )
        body = flat_report(root) if root is not None else "no samples\n"
        args.out.write_text(header + body + "\nCall tree (pyinstrument):\n" + tree)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from storyline.cli import main as storyline

    sys.argv = ["storyline", *argv]
    storyline(argv)


if __name__ == "__main__":
    main()
