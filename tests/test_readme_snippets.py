"""The README's WebSocket snippets, each run as written against a live server.

Each is read from README.md by its marker (``<!-- snippet: NAME -->`` above its code fence),
so the documentation and what is tested cannot drift; only ``url``, ``token`` and
``projectId`` (``project_id``) are defined ahead of it. The JavaScript ones run in Node
with the packages pinned below, installed once per set of pins into .cache/ (which git
ignores); they are skipped when node or npm is missing or the npm registry cannot be
reached. The Python one runs with gql, a test dependency.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support import Api, new_user, token
from tests.support.watch import ws_url

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "readme-snippets"
# The clients and their peers (graphql; rxjs for Apollo; ws, Node 20 having no WebSocket).
PACKAGES = {
    "@apollo/client": "4.3.8",
    "@urql/core": "6.0.3",
    "graphql": "16.15.0",
    "graphql-ws": "6.4.2",
    "rxjs": "7.8.2",
    "ws": "8.23.0",
}
# What every client's browser has, for Node: a global WebSocket.
NODE_SETUP = 'import WebSocket from "ws";\nglobalThis.WebSocket = WebSocket;\n'
FIRST_EVENT_WITHIN = 30.0
NPM_TIMEOUT = 300


def snippet(name: str) -> str:
    """The code of the README's snippet ``name``."""
    marker = rf"<!-- snippet: {re.escape(name)} -->\n```\w+\n(.*?)\n```"
    found = re.search(marker, (ROOT / "README.md").read_text(), re.DOTALL)
    assert found is not None, f"README.md has no snippet {name!r}"
    return found.group(1)


def _npm(npm: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [npm, *args], cwd=cwd, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False
    )


def _installed() -> Path:
    """A folder with the pinned packages in its node_modules: installed into a draft folder,
    then renamed, so that a folder of that name is always complete."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run the README's JavaScript snippets")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    if int(version.stdout.strip().lstrip("v").split(".")[0]) < 20:
        pytest.skip(f"Node 20 or later is needed (graphql-ws 6); this is {version.stdout}")
    manifest = json.dumps({"private": True, "type": "module", "dependencies": PACKAGES})
    folder = CACHE / f"npm-{hashlib.sha256(manifest.encode()).hexdigest()[:16]}"
    if folder.is_dir():
        return folder
    if _npm(npm, "ping", cwd=ROOT).returncode != 0:
        pytest.skip("the npm registry cannot be reached (`npm ping` failed)")
    CACHE.mkdir(parents=True, exist_ok=True)
    draft = Path(tempfile.mkdtemp(prefix="draft-", dir=CACHE))
    try:
        (draft / "package.json").write_text(manifest)
        # The peers are listed above: none installed behind our back (React, say).
        flags = ["--no-audit", "--no-fund", "--ignore-scripts", "--legacy-peer-deps"]
        install = _npm(npm, "install", *flags, cwd=draft)
        assert install.returncode == 0, f"npm install failed:\n{install.stderr}"
        try:
            draft.rename(folder)
        except OSError:  # installed meanwhile by another run
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(draft, ignore_errors=True)
    return folder


@pytest.fixture(scope="session")
async def node_packages() -> Path:
    return await asyncio.to_thread(_installed)


async def first_line(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """The first line ``command`` prints, within FIRST_EVENT_WITHIN; the process is ended then
    (a subscription runs until the project finishes)."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = b""
    try:
        async with asyncio.timeout(FIRST_EVENT_WITHIN):
            line = await process.stdout.readline()
    except TimeoutError:
        pass
    finally:
        if process.returncode is None:
            process.kill()
        _, errors = await process.communicate()
    assert line, f"{command} printed nothing; its stderr:\n{errors.decode(errors='replace')}"
    return line.decode().strip()


async def watched_project(api: Api) -> tuple[str, str]:
    """A new user's token, and their project, now PROCESSING at version 2."""
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    assert (project["status"], project["version"]) == ("PROCESSING", 2), project
    return token(user), project["id"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["graphql-ws", "apollo-client", "urql"])
async def test_a_javascript_snippet_receives_the_first_event(
    api: Api, node_packages: Path, tmp_path: Path, name: str
) -> None:
    auth, project_id = await watched_project(api)
    given = {"url": ws_url(api.url), "token": auth, "projectId": project_id}
    defined = "".join(f"const {key} = {json.dumps(value)};\n" for key, value in given.items())
    # Next to a link to node_modules, for the imports to resolve.
    (tmp_path / "node_modules").symlink_to(node_packages / "node_modules")
    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "setup.mjs").write_text(NODE_SETUP)
    (tmp_path / "snippet.mjs").write_text(defined + snippet(name))
    node = shutil.which("node")
    assert node is not None
    command = [node, "--import", "./setup.mjs", "snippet.mjs"]
    assert await first_line(command, tmp_path) == "PROCESSING 2"


@pytest.mark.slow
async def test_the_python_gql_snippet_receives_the_first_event(api: Api, tmp_path: Path) -> None:
    auth, project_id = await watched_project(api)
    given = {"url": ws_url(api.url), "token": auth, "project_id": project_id}
    defined = "".join(f"{key} = {value!r}\n" for key, value in given.items())
    (tmp_path / "snippet.py").write_text(defined + snippet("gql"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "snippet.py"]
    assert await first_line(command, tmp_path, env) == "PROCESSING 2"
