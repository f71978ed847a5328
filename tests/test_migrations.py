"""The migrations go up from nothing, all the way down, and up again."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from storyline.persistence.engine import sqlalchemy_url
from storyline.persistence.migrate import alembic_config, migrate
from tests.support.databases import create_database

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def run(args: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False, **options)


async def versions(url: str) -> list[str]:
    engine = create_async_engine(sqlalchemy_url(url))
    try:
        async with engine.connect() as conn:
            return list((await conn.scalars(text("SELECT version_num FROM alembic_version"))).all())
    finally:
        await engine.dispose()


async def tables(url: str) -> set[str]:
    engine = create_async_engine(sqlalchemy_url(url))
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
            return {row[0] for row in rows}
    finally:
        await engine.dispose()


async def test_up_down_and_up_again(server_url: str) -> None:
    url = await create_database(server_url)
    await asyncio.to_thread(migrate, url)
    assert {"accounts", "projects", "ledger"} <= await tables(url)
    await asyncio.to_thread(command.downgrade, alembic_config(url), "base")
    assert await tables(url) == {"alembic_version"}
    await asyncio.to_thread(migrate, url)
    assert {"accounts", "projects", "ledger"} <= await tables(url)


@pytest.mark.slow
async def test_the_built_wheel_migrates_with_no_source_tree(
    server_url: str, project_root: Path, tmp_path: Path
) -> None:
    """What a container build does: build the wheel, install it alone, migrate from it."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(project_root / name, source / name)
    shutil.copytree(
        project_root / "src",
        source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    wheels = tmp_path / "wheels"
    build = await asyncio.to_thread(
        run, [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(source)]
    )
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = wheels.glob("storyline-*.whl")
    installed = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(installed)
    shutil.rmtree(source)

    url = await create_database(server_url)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("STORYLINE_") and name != "PYTHONPATH"
    }
    env |= {"PYTHONPATH": str(installed), "STORYLINE_DATABASE_URL": url}
    script = (
        "import storyline.persistence.migrate as m; print(m.__file__);"
        "from storyline.cli import main; main(['migrate'])"
    )
    # -P: nothing but PYTHONPATH and the environment's site-packages, not even the cwd.
    migrated = await asyncio.to_thread(
        run, [sys.executable, "-P", "-c", script], cwd=elsewhere, env=env
    )

    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert Path(migrated.stdout.splitlines()[0]).is_relative_to(installed), migrated.stdout
    assert await versions(url) == [HEAD]
