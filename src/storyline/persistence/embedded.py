"""An embedded PostgreSQL (pgserver) for machines where none is configured."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def embedded_server(data_dir: Path, *, cleanup_mode: str = "stop") -> Any:
    """Start (or reuse) the PostgreSQL under ``data_dir/postgres``; returns pgserver's handle.

    pgserver keeps one server per data directory for all processes that ask for it and,
    by default, stops it when the last of them exits.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as on most servers and CI.
        warnings.simplefilter("ignore")
        import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(  # type: ignore[attr-defined]
        data_dir.resolve() / "postgres", cleanup_mode=cleanup_mode
    )
    log.info("embedded PostgreSQL ready under %s", data_dir / "postgres")
    return server


def embedded_database_url(data_dir: Path) -> str:
    url: str = embedded_server(data_dir).get_uri()
    return url
