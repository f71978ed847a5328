"""grantCredits: an admin tops up an account, creating it first if need be."""

from __future__ import annotations

from storyline.domain.errors import BadUserInput
from storyline.domain.requests import check_grant
from storyline.persistence import accounts
from storyline.services import Services


async def grant_credits(services: Services, *, user_id: str, amount: int, reason: str) -> int:
    """The new balance. The caller has been checked to be an admin."""
    reason = check_grant(user_id=user_id, amount=amount, reason=reason)
    async with services.database.transaction() as tx:
        await accounts.ensure_account(
            tx, user_id=user_id, signup_credits=services.settings.signup_credits
        )
        try:
            return await accounts.grant(tx, user_id=user_id, amount=amount, reason=reason)
        except accounts.BalanceTooHigh:
            raise BadUserInput(
                "amount", f"would take the balance over {accounts.MAX_BALANCE}"
            ) from None
