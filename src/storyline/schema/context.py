"""Per-request context: the instance's services and the caller, authenticated on first use."""

from __future__ import annotations

from dataclasses import dataclass, field

import strawberry

from storyline import logs
from storyline.auth import Principal, authenticate
from storyline.domain.errors import Unauthenticated
from storyline.services import Services


@dataclass
class Context:
    """One per HTTP request, or one per WebSocket connection."""

    services: Services
    authorization: str | None
    # Set by strawberry from a WebSocket's connection_init payload.
    connection_params: dict[str, object] | None = None
    _principal: Principal | Unauthenticated | None = field(default=None, repr=False)

    @property
    def principal(self) -> Principal:
        """The caller; raises UNAUTHENTICATED (every field but introspection needs a token)."""
        if self._principal is None:
            try:
                self._principal = authenticate(self.services.jwt_secret, self._credentials())
                logs.user_id.set(self._principal.user_id)
            except Unauthenticated as refused:
                self._principal = refused
        if isinstance(self._principal, Unauthenticated):
            raise self._principal
        if self._principal.expired:  # a WebSocket outlives its token: every operation checks
            raise Unauthenticated("The token has expired.")
        return self._principal

    def _credentials(self) -> str | None:
        if self.connection_params is not None:
            given = self.connection_params.get("Authorization")
            if given is None:
                given = self.connection_params.get("authorization")
            return given if isinstance(given, str) else None
        return self.authorization


Info = strawberry.Info[Context, None]
