"""Test helpers, one module a concern; conftest.py holds only fixtures.

- ``client``: the one GraphQL client over HTTP (``Client``, ``Api``), tokens, common mutations
- ``servers``: Storyline and stand-ins served on real sockets in this event loop
- ``books``: what the database holds, read behind the API's back
- ``databases``: databases of a test's own, created (and migrated) on the test server
- ``watch``: WebSocket clients of projectStatus, and the one reader that skips keep-alives
- ``fakes``: the fake video service
- ``processes``: real ``storyline serve`` processes
- ``balancer``: HAProxy, as docs/operations.md configures it, in front of such processes
- ``reconnecting``: WebSocket watchers that reconnect and check the state they resume from
- ``threaded``: Storyline in a loop of its own thread, for synchronous drivers
- ``pgbouncer``: PgBouncer in transaction mode in front of the test server

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
