"""Apply the Alembic migrations shipped beside the package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

# migrations/ sits at the project root; the package is installed editable from it.
ROOT = Path(__file__).resolve().parents[3]


def migrate(database_url: str, revision: str = "head") -> None:
    """Must run outside an event loop (Alembic's env runs its own)."""
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    command.upgrade(config, revision)
