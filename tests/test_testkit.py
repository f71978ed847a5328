"""The suite's own house: what its layout promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Nothing listens on port 9 (discard): any attempt to reach PostgreSQL there fails.
UNREACHABLE = "postgresql://storyline@127.0.0.1:9/postgres"


def test_the_pure_tests_run_without_a_database(project_root: Path) -> None:
    env = os.environ | {"STORYLINE_TEST_DATABASE_URL": UNREACHABLE}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/domain", "-q", "-p", "no:cacheprovider", "-n", "0"],
        cwd=project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout, result.stdout
