"""The compat pins test libraries, not Storyline's data: they run without a database."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def money_invariants() -> None:
    return
