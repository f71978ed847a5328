"""The served schema keeps everything of the public contract (it may add, never change), and
the repository's copies of the contract are the shared one's."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import build_schema, find_breaking_changes, find_dangerous_changes

from storyline.schema.roots import build_schema as storyline_schema

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "tests" / "contract" / "schema.graphql"
RUNTIME = ROOT / "docs" / "contract" / "runtime.md"
# shared/ lies beside the clone (CI's layout), or beside a folder of worktrees.
SHARED = next(
    (
        folder / "shared" / "contract"
        for folder in ROOT.parents
        if (folder / "shared" / "contract").is_dir()
    ),
    None,
)
NO_SHARED = pytest.mark.skipif(SHARED is None, reason="no shared/ checkout beside this one")


def test_the_schema_breaks_nothing_in_the_contract() -> None:
    contract = build_schema(HERE.read_text())
    served = build_schema(storyline_schema().as_str())
    assert find_breaking_changes(contract, served) == []
    assert find_dangerous_changes(contract, served) == []


@NO_SHARED
@pytest.mark.parametrize("copy", [HERE, RUNTIME], ids=["schema", "runtime"])
def test_the_copy_of_the_contract_is_current(copy: Path) -> None:
    assert SHARED is not None
    assert copy.read_text() == (SHARED / copy.name).read_text()
