"""Documents named by hash, and trusted documents: which text a request runs.

A request names its document by the text (``query``), by its hash, or both. The hash
comes in either of the forms clients send: GraphQL-over-HTTP's persisted documents,
``"documentId": "sha256:<hex>"``, or Apollo's ``"extensions": {"persistedQuery":
{"version": 1, "sha256Hash": "<hex>"}}``; both are the SHA-256 of the document's exact
UTF-8 text in lowercase hex (graphql_http.document_id). HTTP requests (POST bodies, GET
parameters) and WebSocket subscribe (or legacy start) payloads are resolved here, before
anything else sees them: what runs afterwards is the text, through the schema's one
DocumentGuard and on the same paths (the live fan-out included) as any document.

With STORYLINE_TRUSTED_DOCUMENTS unset the server knows no hashes: a request that gives
a hash with its text runs if they match; one that gives only a hash is answered
``PersistedQueryNotFound`` (so Apollo's persisted-query link sends the text next time).

With it set, the manifest it names (a JSON object of ``"sha256:<hex>"`` to document text)
is all that runs: a hash is resolved to its text; a hash not in it is answered
``PersistedQueryNotFound``; text without a hash is refused, and text with a hash runs only
if it is that hash's document and the manifest holds it. Every refusal is BAD_USER_INPUT.
A bad manifest (unreadable, no such object, a key that is not its text's hash, a document
that does not validate against this schema) stops the server at start (ManifestError).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from storyline.graphql_http import DOCUMENT_ID_PREFIX, document_id
from storyline.schema.documents import DocumentGuard
from storyline.schema.manifest import ManifestError, read_manifest

log = logging.getLogger(__name__)

NOT_FOUND = "PersistedQueryNotFound"  # Apollo's message, which its clients act on
TRUSTED_ONLY = (
    "This server runs trusted documents only: name the document by its hash"
    ' ("documentId": "sha256:<hex>") instead of sending its text.'
)
NOT_TRUSTED = "This document is not one of the server's trusted documents."
MISMATCH = "The document's text does not match the hash it is sent with."
CONFLICT = "documentId and extensions.persistedQuery name different documents."
BAD_DOCUMENT_ID = 'A documentId must be "sha256:" and 64 lowercase hex digits.'
BAD_PERSISTED_QUERY = (
    'extensions.persistedQuery must be {"version": 1, "sha256Hash": "<64 lowercase hex digits>"}.'
)

_HEX = re.compile(r"[0-9a-f]{64}")


class Refused(Exception):
    """A request whose document is not run; ``message`` is for the client (BAD_USER_INPUT)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def formatted(self) -> dict[str, Any]:
        """The error as a GraphQL response carries it."""
        return {"message": self.message, "extensions": {"code": "BAD_USER_INPUT"}}


class PersistedDocuments:
    """Resolves requests to document text; ``manifest`` None when trusted documents are off."""

    def __init__(self, manifest: Mapping[str, str] | None) -> None:
        self.manifest = manifest

    @classmethod
    def load(cls, path: Path | None, guard: DocumentGuard) -> PersistedDocuments:
        """Trusted documents from the manifest at ``path`` (off when None), each checked by
        ``guard`` as a request would be. Raises ManifestError."""
        if path is None:
            return cls(None)
        manifest = read_manifest(path)
        for key, text in manifest.items():
            checked = guard.check(text)
            if not checked.valid:
                raise ManifestError(
                    f"{path}: the document {key} would be refused by this server:"
                    f" {checked.errors[0].message}"
                )
        return cls(manifest)

    def warn_unless_trusted(self, documents: Mapping[str, str]) -> None:
        """Log a warning for each of ``documents`` (by whose it is) that the manifest lacks:
        the server's own clients, which would be refused."""
        for whose, document in documents.items():
            if self.manifest is not None and document_id(document) not in self.manifest:
                log.warning(
                    "%s document is not among the trusted documents: it will be refused"
                    " (storyline trusted-documents write makes a manifest that holds it)",
                    whose,
                )

    def resolve(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """``request`` (a POST body, GET parameters or a subscribe payload) with the text
        of the document it names as its ``query``; raises Refused."""
        named = named_id(request)
        query = request.get("query")
        if named is None:
            if self.manifest is not None:
                raise Refused(TRUSTED_ONLY)
            return dict(request)
        if query is not None:
            # A query that is no string is the view's to refuse, as without a hash.
            if isinstance(query, str) and document_id(query) != named:
                raise Refused(MISMATCH)
            if self.manifest is not None and named not in self.manifest:
                raise Refused(NOT_TRUSTED)
            return dict(request)
        text = None if self.manifest is None else self.manifest.get(named)
        if text is None:
            raise Refused(NOT_FOUND)
        return {**request, "query": text}


def named_id(request: Mapping[str, Any]) -> str | None:
    """The ``sha256:<hex>`` id a request names its document by, in either form; None if
    it names none. Raises Refused for a malformed one, or two that differ."""
    given = request.get("documentId")
    if given is not None and not (
        isinstance(given, str)
        and given.startswith(DOCUMENT_ID_PREFIX)
        and _HEX.fullmatch(given.removeprefix(DOCUMENT_ID_PREFIX))
    ):
        raise Refused(BAD_DOCUMENT_ID)
    extensions = request.get("extensions")
    persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
    if persisted is None:
        return given
    if not isinstance(persisted, dict):
        raise Refused(BAD_PERSISTED_QUERY)
    sha = persisted.get("sha256Hash")
    if persisted.get("version") != 1 or not (isinstance(sha, str) and _HEX.fullmatch(sha)):
        raise Refused(BAD_PERSISTED_QUERY)
    apollo = DOCUMENT_ID_PREFIX + sha
    if given is not None and given != apollo:
        raise Refused(CONFLICT)
    return apollo
