"""Fresh virtual environments that install what a user installs, from a clean copy of the
checkout, and the wheelhouse that fills them without the network when it can.

Every install into a fresh environment is held to the versions of this test environment
(a constraints file of its distributions): what gets installed is what the suite tested,
and a wheelhouse once filled stays valid. Installs read the wheelhouse only (no index);
what it lacks is fetched once, through pip's configured index, by ``Wheelhouse.provide``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PIP_TIMEOUT = 900
# Not pinned: the build tools, which a build chooses itself, and what the tests build.
UNPINNED = frozenset({"pip", "setuptools", "wheel", "storyline", "storyline-pipeline"})


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def run(
    args: list[str | Path], *, timeout: float = PIP_TIMEOUT, **options: Any
) -> subprocess.CompletedProcess[str]:
    """A command's result, its output captured; the caller asserts on it."""
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **options,
    )


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would reach into the checkout or this test
    environment (PYTHONPATH and its kin, the active virtualenv) or configure Storyline."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTHON", "STORYLINE_")) and name != "VIRTUAL_ENV"
    }
    return env | extra


def copy_checkout(root: Path, destination: Path) -> Path:
    """What a fresh clone of ``root`` would hold once the work in progress is committed: its
    tracked files and the untracked ones git does not ignore (no .venv, caches, builds)."""
    listed = run(
        ["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    for name in filter(None, listed.stdout.split("\0")):
        source = root / name
        if source.is_file():  # a tracked file deleted in the work tree is not copied
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def requirements(project: Path, *extras: str) -> list[str]:
    """What installing (and building) the project at ``project`` asks for."""
    config = tomllib.loads((project / "pyproject.toml").read_text())
    wanted = list(config["build-system"]["requires"]) + list(config["project"]["dependencies"])
    optional = config["project"].get("optional-dependencies", {})
    for extra in extras:
        wanted += optional[extra]
    return wanted


@dataclass(frozen=True)
class Wheelhouse:
    """A directory of wheels that fresh environments install from, with no index."""

    path: Path
    constraints: Path

    @classmethod
    def at(cls, path: Path, constraints: Path) -> Wheelhouse:
        """The wheelhouse at ``path``, holding installs to this environment's versions (the
        constraints file is written at ``constraints``)."""
        path.mkdir(parents=True, exist_ok=True)
        pins: dict[str, str] = {}
        for dist in importlib.metadata.distributions():
            name = canonical(dist.metadata["Name"] or "")
            direct = dist.read_text("direct_url.json")
            local = direct is not None and "dir_info" in json.loads(direct)
            if name and name not in UNPINNED and not local:
                pins.setdefault(name, f"{name}=={dist.version}")
        constraints.write_text("".join(f"{pin}\n" for pin in sorted(pins.values())))
        return cls(path, constraints)

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` with pip told to install from this wheelhouse alone, to these versions,
        and not to compile: through the environment, so that the commands a user types run
        unchanged."""
        unconfigured = {name: value for name, value in base.items() if not name.startswith("PIP_")}
        return unconfigured | {
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(self.path),
            "PIP_CONSTRAINT": str(self.constraints),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            # No bytecode compiled at install time (Python compiles what it imports): pip
            # takes a boolean variable as the value of the option's destination, so for
            # --no-compile "0" means compile=False.
            "PIP_NO_COMPILE": "0",
        }

    def provide(self, wanted: list[str]) -> None:
        """Make ``wanted`` (and what it needs) installable from the wheelhouse: a dry run
        from it first, and only if that fails, wheels fetched (or built) from the index."""
        dry = run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", *wanted],
            env=self.env(clean_env()),
        )
        if dry.returncode == 0:
            return
        fetch: list[str | Path] = [sys.executable, "-m", "pip", "wheel"]
        fetch += ["--constraint", self.constraints]
        fetched = run([*fetch, "--wheel-dir", self.path, *wanted], env=clean_env())
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr


def virtualenv(path: Path, env: dict[str, str], *, pip: bool = True) -> Path:
    """A new virtualenv at ``path`` with nothing but pip, or nothing at all; returns its bin
    directory. (This environment's pip installs into one without: ``pip --python``.)"""
    made = run([sys.executable, "-m", "venv", path, *([] if pip else ["--without-pip"])], env=env)
    assert made.returncode == 0, made.stdout + made.stderr
    return path / "bin"


def installed(python: Path, env: dict[str, str]) -> dict[str, str]:
    """The distributions the environment of ``python`` sees: canonical name to version."""
    script = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    listed = run([python, "-P", "-c", script], env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    names: dict[str, str] = json.loads(listed.stdout)
    return {canonical(name): version for name, version in names.items()}
