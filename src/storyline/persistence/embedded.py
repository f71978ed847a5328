"""An embedded PostgreSQL (pgserver) for machines where none is configured."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


def embedded_database_url(data_dir: Path) -> str:
    """Start (or reuse) the PostgreSQL under ``data_dir/postgres`` and return its URL.

    pgserver keeps one server per data directory for all processes that ask for it and
    stops it when the last of them exits.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as on most servers and CI.
        warnings.simplefilter("ignore")
        import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(  # type: ignore[attr-defined]
        data_dir.resolve() / "postgres", cleanup_mode="stop"
    )
    url: str = server.get_uri()
    log.info("embedded PostgreSQL ready under %s", data_dir / "postgres")
    return url
