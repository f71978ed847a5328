"""Test helpers, one module a concern; conftest.py holds only fixtures.

- ``client``: the one GraphQL client over HTTP (``Client``, ``Api``), tokens, common mutations
- ``servers``: Storyline and stand-ins served on real sockets in this event loop
- ``books``: what the database holds, read behind the API's back
- ``databases``: databases of a test's own, created (and migrated) on the test server
- ``watch``: WebSocket clients of projectStatus, and the one reader that skips keep-alives
- ``live_documents``: hypothesis's subscription documents for the live fields
- ``logs``: what was logged while a block ran (``errors_logged``: ERROR records, uvicorn's too)
- ``waiting``: bounded waits: for a condition, for counts to settle, on a background task
- ``outages``: a Storyline whose listener a test cuts off, and its readiness (/readyz)
- ``hubs``: broadcaster's stock Postgres backend and Storyline's hub behind one interface
- ``fakes``: the fake video service
- ``processes``: real ``storyline serve`` processes
- ``balancer``: HAProxy, as docs/operations.md configures it, in front of such processes
- ``reconnecting``: WebSocket watchers that reconnect and check the state they resume from
- ``threaded``: Storyline in a loop of its own thread, for synchronous drivers
- ``pgbouncer``: PgBouncer in transaction mode in front of the test server
- ``browser``: headless Chromium (offline but for 127.0.0.1) and pages that fail on errors
- ``graphiql``: GraphiQL's page and every file it loads, checked against their integrity
- ``venvs``: fresh virtualenvs installing from a wheelhouse, and clean copies of the checkout
- ``prefect``: a temporary Prefect API (imported by its fixture only: Prefect is slow to load)

The everyday names are importable from the package itself.
"""

from tests.support.books import Books, books, row_counts
from tests.support.client import (
    GENERATE,
    GRANT,
    JWT_SECRET,
    PROJECT_SELECTION,
    REPORT,
    UPSTREAM_TOKEN,
    Api,
    Client,
    bearer,
    client,
    new_user,
    token,
)
from tests.support.servers import free_port, free_socket, serving, storyline

__all__ = [
    "GENERATE",
    "GRANT",
    "JWT_SECRET",
    "PROJECT_SELECTION",
    "REPORT",
    "UPSTREAM_TOKEN",
    "Api",
    "Books",
    "Client",
    "bearer",
    "books",
    "client",
    "free_port",
    "free_socket",
    "new_user",
    "row_counts",
    "serving",
    "storyline",
    "token",
]
