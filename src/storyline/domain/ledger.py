"""The ledger's entry kinds: every balance change is one of these, with its ledger row."""

from __future__ import annotations

import enum


class LedgerKind(enum.Enum):
    GRANT = "GRANT"  # credits given: sign-up, or an admin's grant
    CHARGE = "CHARGE"  # a project's price, taken when it is reserved
    REFUND = "REFUND"  # a failed project's charge, given back once
