"""Apply the Alembic migrations shipped inside the package (``storyline/migrations``)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

# A package resource rather than a path beside the checkout: an installed wheel has no
# project root, only the package.
SCRIPT_LOCATION = "storyline:migrations"


def alembic_config(database_url: str | None = None) -> Config:
    """Alembic's configuration for Storyline's migrations, without an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    """Must run outside an event loop (Alembic's env runs its own)."""
    command.upgrade(alembic_config(database_url), revision)
