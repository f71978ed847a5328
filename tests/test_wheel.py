"""What a release and a container build do: build the sdist and, from it, the wheel; install
the wheel alone into a clean virtualenv; migrate and serve from it, far from any source.

The virtualenv installs from the wheelhouse (conftest's ``wheelhouse``) at this test
environment's versions; nothing of the checkout is on its path: no PYTHONPATH, and the
commands run from an empty directory.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from storyline.auth import Role
from storyline.persistence.engine import sqlalchemy_url
from storyline.persistence.migrate import alembic_config
from tests.support import GENERATE, REPORT, client, new_user, token
from tests.support.databases import create_database
from tests.support.fakes import FakeVideoService
from tests.support.processes import served, server_env
from tests.support.venvs import (
    Wheelhouse,
    clean_env,
    copy_checkout,
    requirements,
    run,
    virtualenv,
)
from tests.support.watch import collect, connected, next_event, start

ROOT = Path(__file__).resolve().parents[1]
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="session")
async def built(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Wheelhouse) -> Built:
    """``python -m build`` on a fresh copy of the checkout: the sdist, then the wheel built
    from the sdist (so the sdist is known to hold all the wheel needs). In threads, as the
    commands below: the session's event loop serves Storyline meanwhile."""
    source = copy_checkout(ROOT, tmp_path_factory.mktemp("clone"))
    await asyncio.to_thread(wheelhouse.provide, requirements(source))
    dist = tmp_path_factory.mktemp("dist")
    build = await asyncio.to_thread(
        run,
        [sys.executable, "-m", "build", "--outdir", dist, source],
        env=wheelhouse.env(clean_env()),
    )
    assert build.returncode == 0, build.stdout + build.stderr
    [sdist] = dist.glob("storyline-*.tar.gz")
    [wheel] = dist.glob("storyline-*.whl")
    return Built(sdist, wheel)


@pytest.fixture(scope="session")
async def venv(
    built: Built, wheelhouse: Wheelhouse, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A clean virtualenv with the wheel and its dependencies installed; its bin directory.

    Nothing else, not even pip: this environment's installs into it.
    """
    env = wheelhouse.env(clean_env())
    path = tmp_path_factory.mktemp("wheel-venv") / "venv"
    bin_dir = await asyncio.to_thread(virtualenv, path, env, pip=False)
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", bin_dir / "python"]
    install = await asyncio.to_thread(run, [*pip, "install", built.wheel], env=env)
    assert install.returncode == 0, install.stdout + install.stderr
    return bin_dir


async def versions(url: str) -> list[str]:
    engine = create_async_engine(sqlalchemy_url(url))
    try:
        async with engine.connect() as conn:
            return list((await conn.scalars(text("SELECT version_num FROM alembic_version"))).all())
    finally:
        await engine.dispose()


async def test_the_installed_wheel_migrates_and_serves_a_story_live(
    venv: Path,
    server_url: str,
    fake_upstream: tuple[FakeVideoService, str],
    tmp_path: Path,
) -> None:
    url = await create_database(server_url)
    settings = server_env(url, upstream_url=fake_upstream[1])
    env = clean_env() | {name: v for name, v in settings.items() if name.startswith("STORYLINE_")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    where = await asyncio.to_thread(
        run,
        [venv / "python", "-P", "-c", "import storyline; print(storyline.__file__)"],
        cwd=elsewhere,
        env=env,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv.parent), where.stdout

    migrated = await asyncio.to_thread(run, [venv / "storyline", "migrate"], cwd=elsewhere, env=env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert await versions(url) == [HEAD]

    user = new_user()
    async with (
        served(env, tmp_path / "server.log", storyline=venv / "storyline", cwd=elsewhere) as server,
        client(server.url) as http,
    ):
        project = (await http.data(GENERATE, {"input": {"prompt": "A cat"}}, auth=token(user)))[
            "generateStory"
        ]
        assert project["status"] == "PROCESSING", project
        async with connected(server.url, token(user)) as ws:
            await start(ws, project["id"])
            current = await next_event(ws, within=10)
            reported = await http.data(
                REPORT,
                {
                    "input": {
                        "projectId": project["id"],
                        "status": "COMPLETED",
                        "resultUrl": "https://cdn.example/cat.mp4",
                    }
                },
                auth=token("pipeline", Role.PIPELINE),
            )
            events = await asyncio.wait_for(collect(ws), 10)
        editor = await http.http.get("/")
        script = await http.http.get("/static/editor.js")

    assert (current["status"], current["version"]) == ("PROCESSING", project["version"])
    assert reported["updateStatus"]["status"] == "COMPLETED"
    assert [(e["status"], e["resultUrl"]) for e in events] == [
        ("COMPLETED", "https://cdn.example/cat.mp4")
    ]
    assert events[0]["version"] == reported["updateStatus"]["version"]
    # The editor page is package data too.
    assert editor.status_code == 200
    assert "editor.js" in editor.text
    assert script.status_code == 200
