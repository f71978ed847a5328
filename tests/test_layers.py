"""The layering of src/storyline, checked on its imports (every import statement, at any depth).

Layers, lowest first; a module may import only from its own package or module and from
lower layers:

0. ``graphql_http``: GraphQL over HTTP's media types and the body of a refused request,
   which every part that answers HTTP requests shares (the body limit, uvicorn's protocol
   in compat, the GraphQL view)
1. foundations, which know nothing of the rest but layer 0: ``domain`` (pure rules, no
   I/O), ``compat`` (third-party internals), ``config``, ``logs``, ``metrics``, ``faults``,
   ``limits``, ``web``, ``telemetry`` (OpenTelemetry's libraries, wired by the app)
2. adapters: ``persistence`` (SQL), ``upstream`` (the video service), ``auth`` (tokens),
   ``websocket`` (the server's protocol)
3. ``live`` (status events and their routing to subscribers)
4. ``services`` (what a running instance shares)
5. ``usecases`` (what a caller can ask of Storyline)
6. what drives the use cases: ``schema`` (GraphQL) and ``jobs`` (the background sweeper)
7. what the app is assembled from: ``lifespan`` (what a running instance opens, runs and
   closes), ``probes`` (its health and metrics endpoints)
8. entry points: ``app``, ``server``, ``migrations``, ``trusted_documents`` (the manifest
   command's)
9. ``cli``

And no import cycle between any two modules of storyline.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SOURCE / "storyline"
# The pipeline client: a distribution of its own, which a pipeline installs without the server.
CLIENT = SOURCE.parent / "clients" / "pipeline" / "src" / "storyline_pipeline"

LAYERS: list[set[str]] = [
    {"graphql_http"},
    {
        "domain",
        "compat",
        "config",
        "logs",
        "metrics",
        "faults",
        "limits",
        "web",
        "telemetry",
    },
    {"persistence", "upstream", "auth", "websocket"},
    {"live"},
    {"services"},
    {"usecases"},
    {"schema", "jobs"},
    {"lifespan", "probes"},
    {"app", "server", "migrations", "trusted_documents"},
    {"cli"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(module: str) -> Iterator[str]:
    """The storyline modules ``module`` imports (a name imported from a package counts as
    its submodule when there is one)."""
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}: relative import"
            assert node.module is not None
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in MODULES
                else node.module
                for alias in node.names
            ]
        else:
            continue
        yield from (name for name in names if name in MODULES and name != module)


GRAPH = {module: set(imports(module)) for module in MODULES}


def unit(module: str) -> str:
    """The top-level package or module of storyline that ``module`` belongs to."""
    return module.split(".")[1] if "." in module else module


def test_every_part_of_storyline_has_a_layer() -> None:
    parts = {unit(module) for module in MODULES} - {"storyline"}
    assert parts - RANK.keys() == set()


def test_no_layer_imports_its_own_or_a_higher_one() -> None:
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module != "storyline"
        for target in targets
        if unit(target) != unit(module) and RANK[unit(target)] >= RANK[unit(module)]
    )
    assert upward == []


def test_no_import_cycles() -> None:
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        for target in sorted(GRAPH[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])
    assert cycles == []


def test_the_check_sees_imports() -> None:
    """Guards the checks above against passing vacuously."""
    assert "storyline.persistence.projects" in GRAPH["storyline.usecases.update_status"]
    assert "storyline.logs" in GRAPH["storyline.usecases.update_status"]


def packages_imported(package: Path) -> set[str]:
    """The top-level packages that the modules under ``package`` import."""
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_the_server_and_the_pipeline_client_import_nothing_of_each_other() -> None:
    client = packages_imported(CLIENT)
    assert "storyline_pipeline" in client  # it sees the client's own imports
    assert "storyline" not in client
    assert "storyline_pipeline" not in packages_imported(PACKAGE)
