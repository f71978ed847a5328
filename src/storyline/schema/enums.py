"""The domain's enums, registered under the contract's names.

strawberry marks the classes themselves, so this must run before any type uses them:
every schema module imports its enums from here.
"""

from __future__ import annotations

import strawberry

from storyline.domain.ledger import LedgerKind
from storyline.domain.lifecycle import Status
from storyline.domain.pricing import Quality
from storyline.domain.requests import AspectRatio

strawberry.enum(Status, name="ProjectStatus")
strawberry.enum(Quality, name="VideoQuality")
strawberry.enum(AspectRatio, name="AspectRatio")
strawberry.enum(LedgerKind, name="LedgerKind")


__all__ = ["AspectRatio", "LedgerKind", "Quality", "Status"]
