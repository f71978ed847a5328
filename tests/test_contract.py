"""The served schema keeps everything of the public contract (it may add, never change), and
the repository's copies of the contract are the shared one's.

The contract is schema.graphql and its extensions (account-changes.graphql, which extends
the Subscription type), and the runtime contract (docs/contract/runtime.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import (
    GraphQLSchema,
    build_schema,
    extend_schema,
    find_breaking_changes,
    find_dangerous_changes,
)
from graphql import parse as parse_document

from storyline.schema.roots import build_schema as storyline_schema

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "tests" / "contract"
RUNTIME = ROOT / "docs" / "contract" / "runtime.md"
BASE = "schema.graphql"
EXTENSIONS = ("account-changes.graphql",)
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


def contract() -> GraphQLSchema:
    schema = build_schema((HERE / BASE).read_text())
    for name in EXTENSIONS:
        schema = extend_schema(schema, parse_document((HERE / name).read_text()))
    return schema


def test_the_schema_breaks_nothing_in_the_contract() -> None:
    promised = contract()
    served = build_schema(storyline_schema().as_str())
    assert find_breaking_changes(promised, served) == []
    assert find_dangerous_changes(promised, served) == []


def test_the_extension_is_part_of_what_is_checked() -> None:
    # A contract without its extensions would let accountChanges be renamed unnoticed.
    subscription = contract().subscription_type
    assert subscription is not None
    assert set(subscription.fields) == {"projectStatus", "accountChanges"}


@NO_SHARED
@pytest.mark.parametrize(
    "copy",
    [HERE / BASE, *(HERE / name for name in EXTENSIONS), RUNTIME],
    ids=lambda path: path.name,
)
def test_the_copy_of_the_contract_is_current(copy: Path) -> None:
    assert SHARED is not None
    assert copy.read_text() == (SHARED / copy.name).read_text()
