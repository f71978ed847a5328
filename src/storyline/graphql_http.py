"""GraphQL over HTTP: the response media type a client asked for, when a request ran, and
the body of a request refused before GraphQL saw it.

With ``Accept: application/graphql-response+json`` a request that never executed (parse,
validation or variable-coercion failure) is answered 400 without a ``data`` entry; with
``application/json`` (or no preference) such requests keep the classic 200 answer.

A persisted document (the specification's appendix) is named by its ``documentId``: here
always ``sha256:`` and the SHA-256 of the document's exact UTF-8 text in lowercase hex.
"""

from __future__ import annotations

import hashlib
import json

from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"
DOCUMENT_ID_PREFIX = "sha256:"


def document_id(document: str) -> str:
    """The ``documentId`` that names ``document``: ``sha256:<lowercase hex>`` of its text."""
    # surrogatepass: JSON may carry a lone surrogate, which names no document on file.
    text = document.encode("utf-8", "surrogatepass")
    return DOCUMENT_ID_PREFIX + hashlib.sha256(text).hexdigest()


def negotiate(accept: str | None) -> str:
    """The better of the two media types by the Accept header's q-values.

    A client that names graphql-response+json gets it unless it prefers JSON outright;
    one that names neither (or sends no Accept) gets the classic JSON.
    """
    best, best_q = JSON, -1.0
    for item in (accept or "").split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        kind = kind.lower()
        if q <= 0:
            continue
        if kind == GRAPHQL_RESPONSE_JSON and q >= best_q:
            best, best_q = GRAPHQL_RESPONSE_JSON, q
        elif kind in (JSON, "application/*", "*/*") and q > best_q:
            best, best_q = JSON, q
    return best


def not_executed(result: object) -> bool:
    """Whether a result comes from a request that failed before execution began."""
    if isinstance(result, PreExecutionError):
        return True
    if not isinstance(result, ExecutionResult) or result.data is not None or not result.errors:
        return False
    return all(error.path is None for error in result.errors)


def refusal(message: str) -> bytes:
    """The JSON body of an HTTP request refused before it was executed (a head or body too
    large, a request too slow, unreadable JSON, a wrong method): one GraphQL error, with the
    contract's ``BAD_USER_INPUT`` code, which clients read like any other."""
    error = {"message": message, "extensions": {"code": "BAD_USER_INPUT"}}
    return json.dumps({"errors": [error]}).encode()
