"""HS256 bearer tokens: ``sub`` is the user id, ``role`` is user, pipeline or admin."""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass
from functools import lru_cache

import jwt

from storyline.domain.errors import Forbidden, Unauthenticated

MAX_SUBJECT = 255
# RFC 7519's NumericDate claims. PyJWT reads them with int(), which also takes numeric strings
# and booleans; a cached principal would then carry no expiry at all.
DATE_CLAIMS = ("exp", "nbf", "iat")


class Role(enum.Enum):
    USER = "user"
    PIPELINE = "pipeline"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    role: Role
    expires_at: float | None = None  # the token's exp, enforced for as long as it is used

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and time.time() >= self.expires_at

    def require(self, action: str, *roles: Role) -> None:
        if self.role not in roles:
            raise Forbidden(action)

    @property
    def sees_every_project(self) -> bool:
        return self.role in (Role.PIPELINE, Role.ADMIN)


def issue_token(
    secret: str, subject: str, *, role: Role = Role.USER, ttl: float | None = None
) -> str:
    claims: dict[str, object] = {"sub": subject, "role": role.value, "iat": int(time.time())}
    if ttl is not None:
        claims["exp"] = int(time.time() + ttl)
    return jwt.encode(claims, secret, algorithm="HS256")


def _storable(subject: str) -> bool:
    """A user id PostgreSQL can keep: 1..255 characters of valid Unicode, no NUL."""
    if not 0 < len(subject) <= MAX_SUBJECT or "\x00" in subject:
        return False
    try:
        subject.encode()
    except UnicodeEncodeError:
        return False
    return True


def _numeric_date(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def authenticate(secret: str, authorization: str | None) -> Principal:
    """The caller named by an ``Authorization: Bearer`` value; raises Unauthenticated."""
    if not authorization:
        raise Unauthenticated
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("The Authorization header must be 'Bearer <token>'.")
    principal = _verified(secret, token.strip())
    if principal.expired:  # verified earlier, expired since
        raise Unauthenticated("The token has expired.")
    return principal


@lru_cache(maxsize=4096)
def _verified(secret: str, token: str) -> Principal:
    """A token's principal, verified once per token: clients send the same one each time.

    Only successes are kept (lru_cache does not cache exceptions); expiry is checked
    again on every use.
    """
    try:
        # algorithms pins HS256: tokens signed otherwise, or with "alg": "none", are refused.
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("The token has expired.") from None
    except jwt.PyJWTError:
        raise Unauthenticated("The token is not valid.") from None
    if not all(_numeric_date(claims[name]) for name in DATE_CLAIMS if name in claims):
        raise Unauthenticated("The token's exp, nbf and iat must be numbers of seconds.")
    subject = claims["sub"]
    if not isinstance(subject, str) or not _storable(subject):
        raise Unauthenticated("The token's subject is not valid.")
    try:
        role = Role(claims.get("role", Role.USER.value))
    except ValueError:
        raise Unauthenticated("The token's role is not valid.") from None
    expires = claims.get("exp")
    return Principal(subject, role, None if expires is None else float(expires))
