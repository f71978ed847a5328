"""The database URL and engine."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def sqlalchemy_url(url: str) -> URL:
    """``postgresql://...`` (libpq style, as operators write it) for SQLAlchemy's asyncpg driver."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError("the database URL must be a postgresql:// URL")
    return parsed.set(drivername="postgresql+asyncpg")


def create_engine(url: str, *, pool_size: int) -> AsyncEngine:
    target = sqlalchemy_url(url)
    connect_args: dict[str, Any] = {}
    name = target.query.get("application_name")
    if isinstance(name, str):
        # libpq takes it in the URL, asyncpg as a server setting (it refuses the keyword).
        target = target.difference_update_query(["application_name"])
        connect_args["server_settings"] = {"application_name": name}
    return create_async_engine(
        target,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args=connect_args,
    )
