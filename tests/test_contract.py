"""The served schema keeps everything of the public contract (it may add, never change)."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import build_schema, find_breaking_changes, find_dangerous_changes

from storyline.schema.roots import build_schema as storyline_schema

HERE = Path(__file__).parent / "contract" / "schema.graphql"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "contract" / "schema.graphql"


def test_the_schema_breaks_nothing_in_the_contract() -> None:
    contract = build_schema(HERE.read_text())
    served = build_schema(storyline_schema().as_str())
    assert find_breaking_changes(contract, served) == []
    assert find_dangerous_changes(contract, served) == []


@pytest.mark.skipif(not SHARED.exists(), reason="no shared/ checkout beside this one")
def test_the_copy_of_the_contract_is_current() -> None:
    assert HERE.read_text() == SHARED.read_text()
