"""Project rows read together (persistence/batches.py): the first state of every watcher
that subscribes while another read is under way comes from one statement, and each caller
still gets its own row, whatever the others do (give up, or ask for ids that do not exist)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from storyline.persistence.batches import Batched
from storyline.persistence.database import Database
from storyline.persistence.projects import ProjectRecord, get_many
from tests.support import Api, free_port, new_user


class Counted:
    """Reads of projects by id, one statement each (what Services.project_rows makes),
    with the keys each was given; a read can be held until ``release`` is set."""

    def __init__(self, database: Database) -> None:
        self.reads: list[list[uuid.UUID]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()
        self.database = database

    async def read(self, keys: list[uuid.UUID]) -> dict[uuid.UUID, ProjectRecord]:
        self.reads.append(keys)
        self.started.set()
        await self.release.wait()
        async with self.database.autocommit() as tx:
            return await get_many(tx, project_ids=keys)

    async def under_way(
        self, rows: Batched[uuid.UUID, ProjectRecord], key: uuid.UUID
    ) -> asyncio.Task[ProjectRecord | None]:
        """A caller's get of ``key``, once its read has begun (and, held, waits)."""
        task = asyncio.create_task(rows.get(key))
        await self.started.wait()
        return task


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database.open(database_url, pool_size=2)
    yield database
    await database.dispose()


@pytest.fixture
def held(database: Database) -> tuple[Counted, Batched[uuid.UUID, ProjectRecord]]:
    """Reads that wait for ``release``, and the Batched that makes them."""
    counted = Counted(database)
    counted.release.clear()
    return counted, Batched(counted.read)


@pytest.fixture
async def projects(api: Api) -> list[uuid.UUID]:
    user = new_user()
    made = [(await api.generate(user, quality="SD"))["data"]["generateStory"] for _ in range(2)]
    return [uuid.UUID(project["id"]) for project in made]


async def test_keys_asked_for_together_are_read_in_one_statement_each_its_own_row(
    database: Database, projects: list[uuid.UUID]
) -> None:
    counted = Counted(database)
    rows = Batched(counted.read)
    absent = [uuid.uuid4() for _ in range(200)]
    asked = [*projects, *absent, *projects]  # some ids twice

    found = await asyncio.gather(*(rows.get(key) for key in asked))

    assert len(counted.reads) == 1, counted.reads
    assert sorted(counted.reads[0]) == sorted(set(asked))
    for key, row in zip(asked, found, strict=True):
        assert (row.id if row is not None else None) == (key if key in projects else None)


async def test_a_read_holds_at_most_its_limit_of_keys(database: Database) -> None:
    counted = Counted(database)
    rows = Batched(counted.read, limit=30)

    await asyncio.gather(*(rows.get(uuid.uuid4()) for _ in range(100)))

    assert [len(keys) for keys in counted.reads] == [30, 30, 30, 10]


async def test_in_a_burst_keys_asked_one_after_another_join_one_read(
    database: Database, projects: list[uuid.UUID]
) -> None:
    # A storm's subscriptions come one every few milliseconds, rarely during a read: in a
    # burst (a read ended lately) the next read waits its window for them.
    counted = Counted(database)
    rows = Batched(counted.read, recent=60.0, window=2.0)
    assert await rows.get(projects[0]) is not None  # no read lately: read at once
    await asyncio.sleep(0.05)  # a gap between subscriptions, as a storm has them
    first = asyncio.create_task(rows.get(projects[0]))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(rows.get(projects[1]))

    found = await asyncio.gather(first, second)

    assert [row.id for row in found if row] == projects
    assert counted.reads == [[projects[0]], projects]


async def test_a_key_asked_for_when_no_read_ran_lately_is_read_at_once(
    database: Database, projects: list[uuid.UUID]
) -> None:
    counted = Counted(database)
    rows = Batched(counted.read, recent=0.05, window=60.0)
    assert await rows.get(projects[0]) is not None
    await asyncio.sleep(0.1)  # quiet for longer than ``recent``

    async with asyncio.timeout(30):  # the window (a minute) would be waited in a burst
        assert await rows.get(projects[1]) is not None
    assert counted.reads == [[projects[0]], [projects[1]]]


async def test_keys_asked_for_during_a_read_wait_for_the_next_one(
    held: tuple[Counted, Batched[uuid.UUID, ProjectRecord]], projects: list[uuid.UUID]
) -> None:
    counted, rows = held
    first = await counted.under_way(rows, projects[0])
    # Asked for after the first read began: it must not be answered from that read.
    later = [asyncio.create_task(rows.get(projects[1])) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert not any(task.done() for task in [first, *later])
    counted.release.set()

    assert (await first) is not None
    assert [row.id for row in await asyncio.gather(*later) if row] == [projects[1]] * 3
    assert counted.reads == [[projects[0]], [projects[1]]]


async def test_a_caller_that_gives_up_leaves_the_others_their_rows(
    held: tuple[Counted, Batched[uuid.UUID, ProjectRecord]], projects: list[uuid.UUID]
) -> None:
    counted, rows = held
    gone = asyncio.create_task(rows.get(projects[0]))
    kept = [asyncio.create_task(rows.get(key)) for key in projects]
    await counted.started.wait()
    gone.cancel()
    counted.release.set()

    assert [row.id for row in await asyncio.gather(*kept) if row] == projects
    assert gone.cancelled()
    # Nobody waits for a key any more: the next read is a new one, and it works.
    assert (await rows.get(projects[1])) is not None


async def test_a_failed_read_fails_its_callers_only_and_the_next_read_is_tried(
    database: Database, projects: list[uuid.UUID]
) -> None:
    away = Database.open(f"postgresql://storyline@127.0.0.1:{free_port()}/none", pool_size=1)
    away.patience = 0.0
    failing = Counted(away)
    working = Counted(database)
    broken = True

    async def read(keys: list[uuid.UUID]) -> dict[uuid.UUID, ProjectRecord]:
        return await (failing if broken else working).read(keys)

    rows = Batched(read)
    try:
        failed = await asyncio.gather(*(rows.get(key) for key in projects), return_exceptions=True)
        assert all(isinstance(result, OSError) for result in failed), failed
        broken = False
        assert [row.id for row in await asyncio.gather(*map(rows.get, projects)) if row] == (
            projects
        )
    finally:
        await away.dispose()


async def test_a_caller_gone_before_its_read_leaves_its_key_out(
    held: tuple[Counted, Batched[uuid.UUID, ProjectRecord]], projects: list[uuid.UUID]
) -> None:
    counted, rows = held
    first = await counted.under_way(rows, projects[0])
    gone = asyncio.create_task(rows.get(projects[1]))  # waits for the next read
    kept = asyncio.create_task(rows.get(projects[0]))
    await asyncio.sleep(0.01)
    gone.cancel()
    counted.release.set()

    assert (await first) is not None
    assert (await kept) is not None
    assert counted.reads == [[projects[0]], [projects[0]]]


async def test_a_read_that_hangs_fails_its_callers_and_the_next_ones_are_read(
    database: Database, projects: list[uuid.UUID]
) -> None:
    counted = Counted(database)
    counted.release.clear()
    rows = Batched(counted.read, timeout=0.2)
    stuck = await counted.under_way(rows, projects[0])
    later = asyncio.create_task(rows.get(projects[1]))
    with pytest.raises(TimeoutError):
        await stuck
    counted.release.set()  # too late for the first read, which was given up

    row = await asyncio.wait_for(later, 5)
    assert row is not None
    assert row.id == projects[1]


async def test_closed_reads_end_the_one_under_way_and_take_no_more_keys(
    held: tuple[Counted, Batched[uuid.UUID, ProjectRecord]], projects: list[uuid.UUID]
) -> None:
    counted, rows = held
    waiting = await counted.under_way(rows, projects[0])

    await rows.aclose()

    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(RuntimeError, match="closed"):
        await rows.get(projects[1])
