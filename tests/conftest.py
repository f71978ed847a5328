"""Fixtures: a real PostgreSQL with the real migrations, and Storyline on real sockets.

PostgreSQL is embedded (pgserver) unless STORYLINE_TEST_DATABASE_URL names a server;
either way the suite works in a database of its own, created here and dropped after.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storyline.persistence.embedded import embedded_server
from storyline.persistence.engine import sqlalchemy_url
from storyline.persistence.invariants import violations
from tests.support import Api, free_port, serving, storyline
from tests.support.browser import chromium, offline_args, watched_page
from tests.support.databases import migrated_database
from tests.support.fakes import FakeVideoService
from tests.support.venvs import Wheelhouse


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A PostgreSQL server's URL for creating databases in (its ``postgres`` database)."""
    configured = os.environ.get("STORYLINE_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    server = embedded_server(
        Path(tempfile.mkdtemp(prefix="storyline-test-")), cleanup_mode="delete"
    )
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> str:
    return await migrated_database(server_url)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(sqlalchemy_url(database_url))
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def fake_upstream() -> AsyncIterator[tuple[FakeVideoService, str]]:
    fake = FakeVideoService()
    async with serving(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="session")
async def api(database_url: str, fake_upstream: tuple[FakeVideoService, str]) -> AsyncIterator[Api]:
    """Storyline in front of the fake video service (which answers within the 1 s timeout)."""
    fake, url = fake_upstream
    async with storyline(
        database_url, upstream_url=url, upstream_token="upstream-secret-token"
    ) as client:
        fake.api = client
        yield client


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One temporary Prefect API for the whole session; its URL. For the tests that run the
    pipeline client's flows, here or in a process of their own."""
    from tests.support.prefect import prefect_api  # Prefect only where a flow runs

    with prefect_api(tmp_path_factory.mktemp("prefect-home")) as url:
        yield url


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    """What fresh virtualenvs install from: STORYLINE_TEST_WHEELHOUSE, else a directory in the
    user's cache, kept from one run to the next so that only the first one downloads."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = os.environ.get("STORYLINE_TEST_WHEELHOUSE") or cache / "storyline" / "wheelhouse"
    constraints = tmp_path_factory.mktemp("pins") / "constraints.txt"
    return Wheelhouse.at(Path(path), constraints)


@pytest.fixture
def fake(fake_upstream: tuple[FakeVideoService, str]) -> FakeVideoService:
    return fake_upstream[0]


@pytest.fixture(autouse=True)
def money_invariants(request: pytest.FixtureRequest) -> None:
    """After every test that uses PostgreSQL, the invariants are checked; a test that uses none
    of the database fixtures (the pure domain's, say) cannot start it, and is not held up."""
    if "server_url" in request.fixturenames:  # every database fixture depends on it
        request.getfixturevalue("checked_money_invariants")


@pytest.fixture
async def checked_money_invariants(engine: AsyncEngine) -> AsyncIterator[None]:
    """After the test: the money invariants hold, all of them, across the whole database."""
    yield
    async with engine.connect() as conn:
        broken = await violations(conn)
    assert not broken, f"money invariants broken: {broken}"


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture
def no_collector() -> Iterator[None]:
    """The cycle collector off for the test: what it leaves is what reference counting
    did not free."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, with nothing but 127.0.0.1 to reach: the pages Storyline
    serves must work offline. Skips the test without it (``make browser``)."""
    async with chromium(*offline_args(free_port())) as browser:
        yield browser


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page (own storage) that fails the test on any JavaScript error, a policy
    violation included."""
    async with watched_page(browser) as page:
        yield page
