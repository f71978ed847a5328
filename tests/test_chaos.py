"""The chaos harness's short run (``make chaos`` is the long one, docs/reliability.md its
report): three instances on one PostgreSQL under load for a minute, every kind of fault at
least once, several at a time; then every check passes (nothing lost, charged twice, left
PENDING, stale on a watcher, leaked or unexplained). The same run, with its report and
plot: ``python -m chaos --seconds 60 --warmup 6 --seed 1 --out DIR``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from chaos.faults import KINDS
from chaos.report import write_report
from chaos.run import Options, Run

pytestmark = pytest.mark.slow

# A fixed seed by default: the same draws of faults and load (the timings still vary).
SEED = int(os.environ.get("STORYLINE_CHAOS_SEED", "1"))


async def test_a_minute_of_overlapping_faults_under_load_loses_nothing(tmp_path: Path) -> None:
    options = Options(seconds=60, warmup=6, seed=SEED)
    # PostgreSQL runs as another user where the suite runs as root (pgserver), and pytest
    # makes its own temporary directories private again whenever a session starts: the
    # cluster's files go where that user can always reach them.
    with tempfile.TemporaryDirectory(prefix="storyline-chaos-") as work:
        result = await Run(options, Path(work), tmp_path / "logs").execute()
    report = write_report(
        result, tmp_path, command="pytest tests/test_chaos.py", code="(test)", plot=False
    )

    assert {fault.kind for fault in result.recorder.faults} == set(KINDS)
    overlapping = sum(
        1
        for fault in result.recorder.faults
        for other in result.recorder.faults
        if other.started < fault.started < (other.ended or other.started)
    )
    assert overlapping, "no fault started while another was on"
    assert sum(n for (_, outcome), n in result.recorder.outcomes.items() if outcome == "ok")
    assert result.passed, report.read_text()
