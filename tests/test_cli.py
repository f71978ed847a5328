"""The ``storyline`` command, run as the real installed script in a process of its own."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from storyline.persistence.engine import sqlalchemy_url
from storyline.persistence.migrate import alembic_config
from tests.support import servers
from tests.support.databases import create_database

STORYLINE = Path(sys.executable).parent / "storyline"
SECRET = "zFcVji9DGu-05xOS00qTKZpIPrsvmvXFgJXhtFqTHxqkbC-LVwCMV1gYlJA0Oydi"
COMMAND_TIMEOUT = 120


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STORYLINE), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


async def storyline(*args: str, cwd: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run ``storyline ARGS`` with no STORYLINE_* configuration but ``variables``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("STORYLINE_")}
    env.update(variables)
    return await asyncio.to_thread(_run, list(args), env, cwd)


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout


def the_token(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    return lines[0]


def claims(token: str, secret: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, secret, algorithms=["HS256"])
    return decoded


async def test_token_is_signed_with_the_configured_secret(tmp_path: Path) -> None:
    result = await storyline(
        "token",
        "alice",
        "--role",
        "admin",
        "--ttl",
        "60",
        cwd=tmp_path,
        STORYLINE_JWT_SECRET=SECRET,
        STORYLINE_DATA_DIR=str(tmp_path / "data"),
    )
    token = the_token(succeeded(result))

    decoded = claims(token, SECRET)
    assert decoded["sub"] == "alice"
    assert decoded["role"] == "admin"
    assert abs(decoded["exp"] - (time.time() + 60)) <= 10, decoded


async def test_token_generates_a_secret_when_asked_and_keeps_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    generated = await storyline(
        "token", "bob", "--new-secret", cwd=tmp_path, STORYLINE_DATA_DIR=str(data_dir)
    )
    first = the_token(succeeded(generated))
    secret_file = data_dir / "jwt-secret"
    assert secret_file.is_file()
    secret = secret_file.read_text().strip()
    assert f"a new secret, generated into {secret_file}" in generated.stderr
    kept = await storyline("token", "bob", cwd=tmp_path, STORYLINE_DATA_DIR=str(data_dir))
    second = the_token(succeeded(kept))
    assert f"signed with the secret in {secret_file}\n" in kept.stderr

    assert secret_file.read_text().strip() == secret, "the generated secret was replaced"
    assert len(secret) >= 32
    for token in (first, second):
        decoded = claims(token, secret)
        assert decoded["sub"] == "bob"
        assert decoded["role"] == "user"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert [path.name for path in data_dir.iterdir()] == ["jwt-secret"], "a draft was left behind"
    assert secret not in generated.stderr + kept.stderr


async def test_token_without_a_secret_refuses_and_says_where_it_looked(tmp_path: Path) -> None:
    result = await storyline("token", "carol", cwd=tmp_path)

    assert result.returncode == 1, result
    assert result.stdout == ""
    assert f"{tmp_path / '.storyline' / 'jwt-secret'} does not exist" in result.stderr
    assert "STORYLINE_JWT_SECRET is unset" in result.stderr
    assert "--new-secret" in result.stderr
    assert os.listdir(tmp_path) == [], "a secret was invented"


ME = "{ me { balance } }"


async def test_a_token_from_another_directory_is_one_the_server_accepts(
    database_url: str, tmp_path: Path
) -> None:
    """The server and the command resolve the secret alike: the data directory's file, when
    STORYLINE_JWT_SECRET is unset, wherever the command runs from."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    data_dir = project / ".storyline"
    async with servers.storyline(database_url, jwt_secret=None, data_dir=data_dir) as api:
        from_elsewhere = await storyline(
            "token", "dave", cwd=elsewhere, STORYLINE_DATA_DIR=str(data_dir)
        )
        from_the_project = await storyline("token", "erin", cwd=project)
        for result, user in ((from_elsewhere, "dave"), (from_the_project, "erin")):
            token = the_token(succeeded(result))
            body = await api.post(ME, auth=token)
            assert body == {"data": {"me": {"balance": 100}}}, (user, body, result.stderr)
            assert f"signed with the secret in {data_dir / 'jwt-secret'}\n" in result.stderr
    assert os.listdir(elsewhere) == [], "a secret was invented"


async def test_token_expires_after_24_hours_by_default(tmp_path: Path) -> None:
    result = await storyline(
        "token", "frank", cwd=tmp_path, STORYLINE_JWT_SECRET=SECRET, STORYLINE_DATA_DIR="data"
    )

    decoded = claims(the_token(succeeded(result)), SECRET)
    assert decoded["exp"] - decoded["iat"] == 24 * 3600, decoded
    assert abs(decoded["iat"] - time.time()) <= 10, decoded
    assert "signed with the secret in STORYLINE_JWT_SECRET\n" in result.stderr
    assert "valid until" in result.stderr
    assert SECRET not in result.stderr
    assert "warning" not in result.stderr


async def test_token_ttl_0_never_expires_and_warns(tmp_path: Path) -> None:
    result = await storyline(
        "token", "grace", "--ttl", "0", cwd=tmp_path, STORYLINE_JWT_SECRET=SECRET
    )

    decoded = claims(the_token(succeeded(result)), SECRET)
    assert "exp" not in decoded, decoded
    assert "warning: this token never expires" in result.stderr


@pytest.mark.parametrize("ttl", ["-1", "nan", "inf", "soon"])
async def test_token_refuses_a_ttl_that_is_no_number_of_seconds(tmp_path: Path, ttl: str) -> None:
    result = await storyline("token", "x", "--ttl", ttl, cwd=tmp_path, STORYLINE_JWT_SECRET=SECRET)

    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "--ttl" in result.stderr


HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_migrate_creates_the_schema_and_is_idempotent(
    server_url: str, tmp_path: Path
) -> None:
    url = await create_database(server_url)
    succeeded(await storyline("migrate", cwd=tmp_path, STORYLINE_DATABASE_URL=url))

    engine = create_async_engine(sqlalchemy_url(url))
    try:

        async def schema() -> tuple[set[str], list[str]]:
            async with engine.connect() as conn:
                tables = await conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                )
                versions = await conn.execute(text("SELECT version_num FROM alembic_version"))
                return {row[0] for row in tables}, [row[0] for row in versions]

        tables, versions = await schema()
        assert {"accounts", "projects", "ledger", "alembic_version"} <= tables, tables
        assert versions == [HEAD]

        succeeded(await storyline("migrate", cwd=tmp_path, STORYLINE_DATABASE_URL=url))
        assert await schema() == (tables, versions)
    finally:
        await engine.dispose()


async def test_migrate_goes_over_the_listen_url_when_one_is_set(
    server_url: str, tmp_path: Path
) -> None:
    """Behind a transaction-mode pooler the migrations want a session (an advisory lock,
    DDL): they go over STORYLINE_LISTEN_DATABASE_URL. The pooled URL here leads nowhere."""
    url = await create_database(server_url)
    succeeded(
        await storyline(
            "migrate",
            cwd=tmp_path,
            STORYLINE_DATABASE_URL="postgresql://postgres@/nowhere?host=/nonexistent-storyline",
            STORYLINE_DATABASE_POOLER="transaction",
            STORYLINE_LISTEN_DATABASE_URL=url,
        )
    )
    engine = create_async_engine(sqlalchemy_url(url))
    try:
        async with engine.connect() as conn:
            versions = (await conn.scalars(text("SELECT version_num FROM alembic_version"))).all()
    finally:
        await engine.dispose()
    assert versions == [HEAD]


@pytest.mark.parametrize("weak", ["too-short-secret-7f3a9c", "-" * 34])
async def test_a_weak_secret_is_refused_without_being_printed(tmp_path: Path, weak: str) -> None:
    result = await storyline(
        "token",
        "x",
        cwd=tmp_path,
        STORYLINE_JWT_SECRET=weak,
        STORYLINE_DATA_DIR=str(tmp_path / "data"),
    )

    assert result.returncode == 2, result.stdout
    assert "STORYLINE_JWT_SECRET" in result.stderr, result.stderr
    assert "secrets.token_urlsafe(48)" in result.stderr, result.stderr
    output = result.stdout + result.stderr
    assert weak not in output, output
