"""The database URL and engine."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def sqlalchemy_url(url: str) -> URL:
    """``postgresql://...`` (libpq style, as operators write it) for SQLAlchemy's asyncpg driver."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError("the database URL must be a postgresql:// URL")
    return parsed.set(drivername="postgresql+asyncpg")


def create_engine(url: str, *, pool_size: int) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )
