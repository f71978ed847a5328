"""docs/prefect.md's commands, as written, from a fresh copy of the clone: the pipeline client
installs into a virtualenv of its own without the server, and its example flow drives a
project of a running Storyline to COMPLETED.

The blocks run are the ones the doc marks ``<!-- tested: NAME ... -->``, so the doc and this
test cannot drift. pip installs from the wheelhouse (conftest's ``wheelhouse``), told so
through the environment; ``python3`` is this suite's interpreter (the doc asks for 3.11+);
the ``run`` block gets the test server's address and a real project id in place of the
doc's ``http://127.0.0.1:8000`` and ``PROJECT_ID``, and its ``.venv/bin/storyline`` (the
``make run`` environment's command) is this environment's.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from storyline.auth import Role
from tests.support import JWT_SECRET, Api, new_user, token
from tests.support.prefect import QUIET
from tests.support.processes import STORYLINE
from tests.support.venvs import (
    Wheelhouse,
    canonical,
    clean_env,
    copy_checkout,
    installed,
    requirements,
    run,
)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "prefect.md"
BLOCK = re.compile(r"<!-- tested: (\w+)[^>]*-->\n```sh\n(.*?)```", re.DOTALL)
# The server's own, which the client must never bring: a pipeline talks to it over HTTP.
SERVER_ONLY = {"storyline", "strawberry-graphql", "graphql-core", "pgserver", "broadcaster"}

pytestmark = pytest.mark.slow


def blocks() -> dict[str, str]:
    found = dict(BLOCK.findall(DOC.read_text()))
    assert set(found) == {"install", "run"}, found
    return found


def dependencies(python: Path, env: dict[str, str]) -> dict[str, list[str]]:
    """What each distribution of that environment requires, as its metadata says."""
    script = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({d.metadata['Name']: d.requires or [] for d in m.distributions()}))"
    )
    listed = run([python, "-P", "-c", script], env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    found: dict[str, list[str]] = json.loads(listed.stdout)
    return {canonical(name): requires for name, requires in found.items()}


def closure(requires: dict[str, list[str]], name: str, extras: tuple[str, ...] = ()) -> set[str]:
    """``name`` with its extras and everything they need, transitively."""
    seen: set[str] = set()
    todo = [(canonical(name), extras)]
    while todo:
        current, wanted = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for line in requires[current]:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in wanted or ("",)):
                todo.append((canonical(requirement.name), tuple(requirement.extras)))
    return seen


def check_installed_alone(python: Path, env: dict[str, str]) -> None:
    """The client's environment holds the client, httpx, Prefect and what they need: nothing
    of the server."""
    present = set(installed(python, env))
    requires = dependencies(python, env)
    own = [Requirement(line) for line in requires["storyline-pipeline"]]
    assert {(r.name, str(r.marker)) for r in own} == {
        ("httpx", "None"),
        ("prefect", 'extra == "prefect"'),
    }
    # Without its extra, the client is an HTTP client and what that needs.
    alone = closure(requires, "storyline-pipeline")
    assert alone == {"storyline-pipeline"} | closure(requires, "httpx")
    # pip installed what the client and Prefect need, and nothing else.
    assert present - {"pip", "setuptools"} == closure(requires, "storyline-pipeline", ("prefect",))
    assert present & SERVER_ONLY == set()
    unimportable = run([python, "-P", "-c", "import storyline"], env=env, timeout=60)
    assert "No module named 'storyline'" in unimportable.stderr


async def test_the_documented_commands_install_the_client_alone_and_run_the_example(
    api: Api, wheelhouse: Wheelhouse, prefect_harness: str, tmp_path: Path
) -> None:
    documented = blocks()
    clone = copy_checkout(ROOT, tmp_path / "clone")
    await asyncio.to_thread(
        wheelhouse.provide, requirements(clone / "clients" / "pipeline", "prefect")
    )
    interpreter = tmp_path / "interpreter"
    interpreter.mkdir()
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    (interpreter / "python3").symlink_to(base)
    env = clean_env()
    env["PATH"] = f"{interpreter}:{env.get('PATH', '')}"

    install = await asyncio.to_thread(
        run,
        ["bash", "-euo", "pipefail", "-c", documented["install"]],
        cwd=clone,
        env=wheelhouse.env(env),
    )

    assert install.returncode == 0, install.stdout + install.stderr
    python = clone / ".venv-pipeline" / "bin" / "python"
    await asyncio.to_thread(check_installed_alone, python, env)

    project = (await api.generate(new_user()))["data"]["generateStory"]
    assert project["status"] == "PROCESSING", project
    (clone / ".venv" / "bin").mkdir(parents=True)
    (clone / ".venv" / "bin" / "storyline").symlink_to(STORYLINE)
    script = (
        documented["run"]
        .replace("http://127.0.0.1:8000", api.url)
        .replace("PROJECT_ID", project["id"])
    )
    run_env = env | QUIET
    run_env |= {
        "PREFECT_API_URL": prefect_harness,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "STORYLINE_JWT_SECRET": JWT_SECRET,  # what `make run`'s data directory would hold
    }
    flow = await asyncio.to_thread(
        run, ["bash", "-euo", "pipefail", "-c", script], cwd=clone, env=run_env, timeout=180
    )

    assert flow.returncode == 0, flow.stdout + flow.stderr
    done = await api.data(
        "query P($id: ID!) { project(id: $id) { status progress stage resultUrl } }",
        {"id": project["id"]},
        auth=token("admin", Role.ADMIN),
    )
    assert done["project"] == {
        "status": "COMPLETED",
        "progress": 100,
        "stage": "done",
        "resultUrl": f"https://videos.storyline.invalid/{project['id']}.mp4",
    }
