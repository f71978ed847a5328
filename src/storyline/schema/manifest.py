"""The trusted-documents manifest: read by the server at start, written by
``storyline trusted-documents write`` from the documents Storyline's clients send.

The manifest is a JSON object of ``"sha256:<hex>"`` (graphql_http.document_id) to the
document's exact text. Its documents come from:

- the server's own clients: the editor page (web/static/editor.graphql) and the built-in
  simulator (upstream/simulator.py's REPORT);
- each installed distribution that declares an entry point in the group
  ``storyline.trusted_documents`` naming a mapping of operation names to document texts
  (the pipeline client's is its ``DOCUMENTS``): the server imports no client by name;
- files given to the command, one document each.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from storyline import web
from storyline.graphql_http import document_id
from storyline.upstream.simulator import REPORT as SIMULATOR_REPORT

ENTRY_POINTS = "storyline.trusted_documents"


class ManifestError(ValueError):
    """A manifest the server cannot start with, or a document that cannot go in one; the
    message says why."""


@dataclass(frozen=True)
class Source:
    """Documents one client sends, and whose they are (for the command's account)."""

    whose: str
    documents: tuple[str, ...]


def own_sources() -> list[Source]:
    """The documents of the clients Storyline itself ships."""
    return [
        Source("the editor page (storyline/web/static/editor.graphql)", (web.editor_document(),)),
        Source("the built-in simulator", (SIMULATOR_REPORT,)),
    ]


def entry_point_sources() -> list[Source]:
    """The documents installed distributions declare (``storyline.trusted_documents``)."""
    sources = []
    for point in entry_points(group=ENTRY_POINTS):
        whose = f"{point.dist.name if point.dist else 'an unknown distribution'} ({point.value})"
        try:
            documents = point.load()
        except Exception as error:
            raise ManifestError(f"{whose} failed to load: {error!r}") from None
        if not (
            isinstance(documents, Mapping)
            and all(isinstance(text, str) for text in documents.values())
        ):
            raise ManifestError(f"{whose} is no mapping of operation names to documents")
        sources.append(Source(whose, tuple(documents.values())))
    return sources


def file_source(path: Path) -> Source:
    try:
        return Source(str(path), (path.read_bytes().decode("utf-8"),))
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(f"cannot read {path}: {error}") from None


def manifest_of(documents: Iterable[str]) -> dict[str, str]:
    return {document_id(text): text for text in sorted(set(documents))}


def write_manifest(path: Path, manifest: Mapping[str, str]) -> None:
    """Write ``manifest`` to ``path`` whole or not at all: a server starting meanwhile reads
    the old one or the new one."""
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    draft.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n", "utf-8")
    draft.replace(path)


def read_manifest(path: Path) -> dict[str, str]:
    """The manifest at ``path``, each key checked to be its document's id. Raises
    ManifestError."""
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as error:
        raise ManifestError(f"cannot read {path}: {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path} is not JSON: {error}") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f'{path} must hold a JSON object of "sha256:<hex>" to document text')
    for key, text in manifest.items():
        if not isinstance(text, str):
            raise ManifestError(f"{path}: the value of {key} is not a document's text")
        if key != document_id(text):
            raise ManifestError(
                f"{path}: {key} is not the id of its document, which is {document_id(text)}"
                " (sha256 of the exact text, lowercase hex)"
            )
    return manifest
