"""Per-request context: the instance's services and the caller, authenticated on first use.

An HTTP request's caller is named by its ``Authorization`` header. A WebSocket's, by the
first of these that gives one (clients differ in where they put it):

1. the connection_init payload's ``Authorization`` (graphql-ws's and urql's examples);
2. the payload's ``headers.Authorization`` (Apollo Client's);
3. the upgrade request's ``Authorization`` header (clients outside a browser can send one).

The payload's keys match in any case (``authorization`` too); a value that is absent, null
or empty gives none, so the next applies. Whichever it is reads ``Bearer <token>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import strawberry

from storyline import logs
from storyline.auth import Principal, authenticate
from storyline.domain.errors import Unauthenticated
from storyline.services import Services

NO_CREDENTIALS = 'No token: send {"Authorization": "Bearer <token>"} in connection_init.'


@dataclass
class Context:
    """One per HTTP request, or one per WebSocket connection."""

    services: Services
    authorization: str | None  # the HTTP request's header (a WebSocket's upgrade request's)
    websocket: bool = False
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

    @property
    def authenticated(self) -> bool:
        """Whether the caller is known (authenticated already, and valid)."""
        return isinstance(self._principal, Principal)

    def _credentials(self) -> str | None:
        if not self.websocket:
            return self.authorization
        given = init_authorization(self.connection_params or {}) or self.authorization
        if not given:
            raise Unauthenticated(NO_CREDENTIALS)
        return given


def init_authorization(payload: Mapping[str, object]) -> str | None:
    """The ``Authorization`` value a connection_init payload carries, at its top level or in
    its ``headers``; None when it carries none."""
    given = _named(payload, "authorization")
    if given is None or given == "":
        headers = _named(payload, "headers")
        given = _named(headers, "authorization") if isinstance(headers, Mapping) else None
    if given is None or given == "":
        return None
    if not isinstance(given, str):
        raise Unauthenticated("Authorization must be a string: 'Bearer <token>'.")
    return given


def _named(mapping: Mapping[str, object], name: str) -> object:
    """The value of ``mapping``'s key ``name``, in any case; None when it has none."""
    found = [value for key, value in mapping.items() if key.lower() == name]
    if len(found) > 1:  # which one the client meant is anyone's guess
        raise Unauthenticated(f"connection_init's payload has {name!r} more than once.")
    return found[0] if found else None


Info = strawberry.Info[Context, None]
