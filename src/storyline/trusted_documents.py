"""``storyline trusted-documents write PATH``, and ``serve``'s check of the manifest it is
given: both run documents through the schema's own guard, so a manifest the command writes
is one the server starts with (schema/manifest.py says where the documents come from)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from graphql import OperationDefinitionNode

from storyline.config import Settings
from storyline.graphql_http import document_id
from storyline.schema.manifest import (
    ENTRY_POINTS,
    ManifestError,
    entry_point_sources,
    file_source,
    manifest_of,
    own_sources,
    write_manifest,
)
from storyline.schema.roots import build_schema

COMMAND = "storyline trusted-documents"


def write_command(settings: Settings, path: Path, files: Sequence[Path]) -> None:
    """Write the manifest; on stderr, what it holds and whose each document is. Exits 1,
    writing nothing, when a document would be refused by this server or a source fails."""
    # The manifest being replaced may be the one configured: it is not read here.
    schema = build_schema(settings.model_copy(update={"trusted_documents": None}))
    try:
        installed = entry_point_sources()
        sources = [*own_sources(), *installed, *(file_source(file) for file in files)]
    except ManifestError as error:
        _fail(str(error))
    lines = []
    for source in sources:
        for document in source.documents:
            checked = schema.documents.check(document)
            if checked.document is None or checked.errors:
                _fail(f"{source.whose}: a document this server refuses: {checked.errors[0]}")
            names = [
                definition.name.value if definition.name else "(anonymous)"
                for definition in checked.document.definitions
                if isinstance(definition, OperationDefinitionNode)
            ]
            lines.append(f"  {document_id(document)}  {source.whose}: {', '.join(names)}")
    manifest = manifest_of(document for source in sources for document in source.documents)
    write_manifest(path, manifest)
    print(f"{COMMAND}: wrote {len(manifest)} documents to {path}", file=sys.stderr)
    print("\n".join(lines), file=sys.stderr)
    if not installed:
        print(
            f"{COMMAND}: no installed client declares documents (entry points"
            f" {ENTRY_POINTS!r}): install the pipeline client (storyline-pipeline) beside"
            " the server to trust its reports",
            file=sys.stderr,
        )


def refuse_a_bad_manifest(settings: Settings) -> None:
    """Exit 2 saying why, if the server could not start with the configured manifest."""
    try:
        build_schema(settings)
    except ManifestError as error:
        print(f"storyline: STORYLINE_TRUSTED_DOCUMENTS: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _fail(message: str) -> NoReturn:
    print(f"{COMMAND}: {message}", file=sys.stderr)
    raise SystemExit(1)
