"""The served schema keeps everything of the public contract (it may add, never change).

The contract is schema.graphql and its extensions (account-changes.graphql, which extends
the Subscription type): copies of the shared files, kept equal to them."""

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

HERE = Path(__file__).parent / "contract"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "contract"
BASE = "schema.graphql"
EXTENSIONS = ("account-changes.graphql",)


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


@pytest.mark.skipif(not SHARED.exists(), reason="no shared/ checkout beside this one")
@pytest.mark.parametrize("name", [BASE, *EXTENSIONS])
def test_the_copy_of_the_contract_is_current(name: str) -> None:
    assert (HERE / name).read_text() == (SHARED / name).read_text()
