"""HS256 bearer tokens: ``sub`` is the user id, ``role`` is user, pipeline or admin."""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import math
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jwt

from storyline.domain.errors import Forbidden, Unauthenticated

MAX_SUBJECT = 255
# RFC 7519's NumericDate claims. PyJWT reads them with int(), which also takes numeric strings
# and booleans; a cached principal would then carry no expiry at all.
DATE_CLAIMS = ("exp", "nbf", "iat")
# The tokens _plain_hs256 reads itself: headers that say HS256 and nothing else, claims
# among these, each date an int. Anything else is PyJWT's to decide.
PLAIN_HEADERS = ({"alg": "HS256", "typ": "JWT"}, {"alg": "HS256"})
PLAIN_CLAIMS = frozenset({"sub", "role", *DATE_CLAIMS})
BASE64URL = re.compile(rb"[A-Za-z0-9_-]+")
# Header segments checked once and remembered, bounded in bytes: at most 64 of at most 64
# bytes each (a plain header's is 36).
MAX_REMEMBERED_HEADER = 64


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


def _plain_hs256(secret: str, token: str) -> dict[str, Any] | None:
    """The claims of a token PyJWT's decode would accept as it is called in ``_verified``,
    when the token is of the plain kind every issuer of HS256 tokens makes (see
    PLAIN_HEADERS and PLAIN_CLAIMS); None for any other token, valid or not: PyJWT decides.

    PyJWT spends about 60 µs on a token (it checks base64 character by character, and
    prepares its key each time); this, about 10. A reconnect storm verifies one new token
    per watcher. It never refuses, so every refusal, and its message, is PyJWT's.
    tests/test_auth.py holds it to PyJWT's decisions over generated tokens.
    """
    key = _hmac_key(secret)
    if not token.isascii():
        return None  # base64url and dots only: not a token of any kind
    parts = token.encode().split(b".")
    if key is None or len(parts) != 3 or not _plain_header(parts[0]):
        return None
    # A signature segment decodes to the MAC exactly when it is the MAC's canonical
    # encoding (the only one accepted here): compared encoded, nothing is decoded.
    signed = hmac.digest(key, parts[0] + b"." + parts[1], "sha256")  # one call, in C
    if not hmac.compare_digest(base64.urlsafe_b64encode(signed).rstrip(b"="), parts[2]):
        return None
    if not BASE64URL.fullmatch(parts[1]):
        return None
    try:
        claims = json.loads(_canonical_base64url(parts[1]))
    except (ValueError, RecursionError):
        return None
    if not isinstance(claims, dict) or not claims.keys() <= PLAIN_CLAIMS:
        return None
    if not isinstance(claims.get("sub"), str):
        return None
    dates = {name: claims[name] for name in DATE_CLAIMS if name in claims}
    if not all(type(value) is int for value in dates.values()):
        return None
    now = time.time()
    if dates.get("iat", -math.inf) > now or dates.get("nbf", -math.inf) > now:
        return None
    if dates.get("exp", math.inf) <= now:
        return None
    return claims


def _plain_header(segment: bytes) -> bool:
    """Whether a header segment is canonical base64url of a JSON object in PLAIN_HEADERS.
    An issuer writes the same header on every token: short segments are remembered."""
    if len(segment) > MAX_REMEMBERED_HEADER:
        return _read_header(segment)
    return _remembered_header(segment)


def _read_header(segment: bytes) -> bool:
    if not BASE64URL.fullmatch(segment):
        return False
    try:
        return bool(json.loads(_canonical_base64url(segment)) in PLAIN_HEADERS)
    except (ValueError, RecursionError):
        return False


_remembered_header = lru_cache(maxsize=64)(_read_header)


@lru_cache(maxsize=4)
def _hmac_key(secret: str) -> bytes | None:
    """The key PyJWT signs and verifies HS256 with for this secret; None if it refuses it
    (a secret that looks like a public key, say): then so does every token's check."""
    try:
        key: bytes = jwt.algorithms.HMACAlgorithm(hashlib.sha256).prepare_key(secret)
    except jwt.InvalidKeyError:
        return None
    return key


def _canonical_base64url(part: bytes) -> bytes:
    """The bytes of an unpadded base64url segment that encodes them back to itself;
    ValueError for any other (PyJWT refuses those)."""
    decoded = base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != part:
        raise ValueError("not canonical base64url")
    return decoded


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
        claims = _plain_hs256(secret, token)
        if claims is None:
            # algorithms pins HS256: tokens signed otherwise, or "alg": "none", are refused.
            claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("The token has expired.") from None
    except (jwt.PyJWTError, UnicodeError):  # UnicodeError: a lone surrogate, say
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
