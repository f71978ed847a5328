"""The database URL and the engine (SQLAlchemy's pool) behind persistence.database."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# libpq's spellings (what operators write) and SQLAlchemy's (what its users write).
POSTGRES_SCHEMES = ("postgresql", "postgres")

# Behind a transaction-mode pooler a connection's next transaction (or statement outside
# one) may run on another server connection, where a statement it prepared by name earlier
# does not exist, or another process's statement of that name does (asyncpg numbers names
# per process). Without its statement cache, asyncpg prepares statements unnamed and parses
# them again in the round trip that binds and runs them (asyncpg 0.29 and later); SQLAlchemy's
# own cache of prepared statements, on its execution path (pings, the dialect's first
# queries), is off too.
UNPREPARED: dict[str, Any] = {"statement_cache_size": 0, "prepared_statement_cache_size": 0}


def sqlalchemy_url(url: str) -> URL:
    """A PostgreSQL URL in any common spelling (``postgresql://``, ``postgres://``,
    ``postgresql+asyncpg://``) as SQLAlchemy's asyncpg URL."""
    parsed = make_url(url)
    if parsed.drivername.partition("+")[0] not in POSTGRES_SCHEMES:
        raise ValueError("the database URL must be a postgresql:// URL")
    return parsed.set(drivername="postgresql+asyncpg")


def driver_url(url: str) -> str:
    """The same URL as asyncpg takes it (libpq's form), for connections outside the pool."""
    target = sqlalchemy_url(url).set(drivername="postgresql")
    return target.render_as_string(hide_password=False)


def create_engine(url: str, *, pool_size: int, transaction_pooler: bool = False) -> AsyncEngine:
    """The pool of connections to ``url``. ``transaction_pooler``: ``url`` is a
    transaction-mode pooler's (PgBouncer's ``pool_mode = transaction``), so no statement
    stays prepared beyond the round trip that runs it."""
    target = sqlalchemy_url(url)
    connect_args: dict[str, Any] = {}
    name = target.query.get("application_name")
    if isinstance(name, str):
        # libpq takes it in the URL, asyncpg as a server setting (it refuses the keyword).
        target = target.difference_update_query(["application_name"])
        connect_args["server_settings"] = {"application_name": name}
    if transaction_pooler:
        connect_args |= UNPREPARED
    return create_async_engine(
        target,
        # Every connection the pool opens stays open. With overflow connections, a burst
        # past pool_size paid for a connection (fork, authentication, statements prepared
        # again) that was closed as soon as it came back, then paid again at the next one.
        pool_size=pool_size,
        max_overflow=0,
        # No pool_pre_ping: on asyncpg it asks the server with BEGIN, an empty statement and
        # ROLLBACK, three round trips before each request's first statement (more than
        # updateStatus's own two); compat.sqlalchemy's checkout asks with one.
        connect_args=connect_args,
    )
