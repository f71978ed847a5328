"""No private name of a third-party library is used outside ``storyline.compat``.

The rule, checked on the syntax tree of every module of ``src/storyline`` except
``compat/`` (whose modules exist to hold such uses, each pinned by its own test):

(a) No import from a third-party module whose dotted path has a component starting with an
    underscore (``broadcaster._backends.base``), and no underscored name imported from a
    third-party module (``from graphql.pyutils import _helper``).
(b) No attribute ``x._name`` (or ``getattr(x, "_name")`` and its kin) where ``x`` is not
    ``self`` or ``cls``, unless ``_name`` is one Storyline defines itself (a function, class,
    class attribute or ``self._name`` of its own) or is documented API despite its
    underscore (SQLAlchemy's ``Row._mapping``, namedtuple's ``_replace``...).
(c) A class deriving from a third-party class, directly or through Storyline classes, uses
    no underscored name of its own: it defines none (method, class attribute, ``self._x``)
    and reads none through ``self``/``cls``. It shares one namespace with the library's
    private names, so such a name either is the library's (an internal reached through
    ``self``) or may silently override one in a later release. Dunders (``__init__``,
    ``__slots__``) are the language's, not the library's, and allowed.

"Third-party" is any module that is neither Storyline's nor the standard library's. A class
imported from ``storyline.compat`` counts as Storyline's: compat re-exports a library's
class only where subclassing it is that library's documented API (broadcaster's
``BroadcastBackend``), and pins it there.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SOURCE / "storyline"
FENCE = PACKAGE / "compat"

# Underscored names that are their library's documented API.
DOCUMENTED = {
    "_mapping",  # SQLAlchemy's Row._mapping
    "_asdict",  # namedtuple's (and SQLAlchemy's Row's) documented methods
    "_replace",
    "_fields",
    "_exit",  # os._exit
}

# Known uses still to move into compat, as "path what" (none left).
KNOWN: set[str] = set()

Parsed = list[tuple[str, Path, ast.Module]]


@dataclass(frozen=True)
class Use:
    path: Path
    line: int
    what: str

    @property
    def key(self) -> str:
        return f"{self.path.relative_to(SOURCE.parent)} {self.what}"

    def __str__(self) -> str:
        return f"{self.path.relative_to(SOURCE.parent)}:{self.line} {self.what}"


def modules() -> Parsed:
    parsed = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if FENCE in path.parents:
            continue
        parts = path.relative_to(SOURCE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        parsed.append((name, path, ast.parse(path.read_text(), str(path))))
    return parsed


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def third_party(module: str) -> bool:
    root = module.partition(".")[0]
    return root not in ("", "storyline") and root not in sys.stdlib_module_names


def imports(tree: ast.Module, module: str) -> dict[str, str]:
    """The module-level names a module imports, each with its qualified name."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    root = alias.name.partition(".")[0]
                    names[root] = root
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                package = module.rsplit(".", node.level)[0]
                source = f"{package}.{source}" if source else package
            for alias in node.names:
                names[alias.asname or alias.name] = f"{source}.{alias.name}"
    return names


def qualified(base: ast.expr, module: str, names: dict[str, str]) -> str | None:
    parts: list[str] = []
    while isinstance(base, ast.Attribute):
        parts.insert(0, base.attr)
        base = base.value
    if isinstance(base, ast.Subscript):  # Generic[...] bases: the class subscripted
        return qualified(base.value, module, names)
    if not isinstance(base, ast.Name):
        return None
    head = names.get(base.id, f"{module}.{base.id}")
    return ".".join([head, *parts])


def accessed(node: ast.AST) -> tuple[ast.expr, str, int] | None:
    """``x._name`` as (x, name, line), with ``getattr(x, "_name")`` and its kin read the same."""
    if isinstance(node, ast.Attribute):
        return node.value, node.attr, node.lineno
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
    ):
        return node.args[0], node.args[1].value, node.lineno
    return None


def on_self(value: ast.expr) -> bool:
    return isinstance(value, ast.Name) and value.id in ("self", "cls")


def offenders(parsed: Parsed) -> list[Use]:
    """Every use of a third-party private name in ``parsed`` (module name, path, tree)."""
    classes: dict[str, tuple[Path, ast.ClassDef, list[str]]] = {}
    own: set[str] = set()  # the underscored names Storyline defines itself
    found: list[Use] = []
    for module, path, tree in parsed:
        names = imports(tree, module)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                if third_party(node.module):
                    if any(private(part) for part in node.module.split(".")):
                        found.append(Use(path, node.lineno, f"imports {node.module}"))
                    for alias in node.names:
                        if private(alias.name):
                            found.append(Use(path, node.lineno, f"imports {alias.name}"))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    dotted = alias.name.split(".")
                    if third_party(alias.name) and any(private(part) for part in dotted):
                        found.append(Use(path, node.lineno, f"imports {alias.name}"))
            elif isinstance(node, ast.ClassDef):
                bases = [qualified(base, module, names) or "" for base in node.bases]
                classes[f"{module}.{node.name}"] = (path, node, bases)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and on_self(node.value)
            ):
                own.add(node.attr)
            if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "__slots__" for target in node.targets
            ):
                own.update(
                    entry.value
                    for entry in ast.walk(node.value)
                    if isinstance(entry, ast.Constant) and isinstance(entry.value, str)
                )

    def derived(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name in seen or name not in classes:
            return False
        for base in classes[name][2]:
            if base in classes and derived(base, seen | {name}):
                return True
            if base not in classes and third_party(base):
                return True
        return False

    for name, (path, node, _) in classes.items():
        if not derived(name):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) and private(inner.name):
                found.append(Use(path, inner.lineno, f"{node.name} defines {inner.name}"))
            got = accessed(inner)
            if got is not None and on_self(got[0]) and private(got[1]):
                found.append(Use(path, got[2], f"{node.name} uses self.{got[1]}"))
        for statement in node.body:
            targets: list[ast.expr] = []
            if isinstance(statement, ast.Assign):
                targets = statement.targets
            elif isinstance(statement, ast.AnnAssign):
                targets = [statement.target]
            for target in targets:
                if isinstance(target, ast.Name) and private(target.id):
                    found.append(Use(path, statement.lineno, f"{node.name} defines {target.id}"))

    for _, path, tree in parsed:
        for node in ast.walk(tree):
            got = accessed(node)
            if got is None:
                continue
            value, attribute, line = got
            if (
                private(attribute)
                and not on_self(value)
                and attribute not in own
                and attribute not in DOCUMENTED
            ):
                found.append(Use(path, line, f"uses {ast.unparse(value)}.{attribute}"))
    return sorted(set(found), key=str)


def test_no_private_third_party_name_is_used_outside_compat() -> None:
    remaining = [str(use) for use in offenders(modules()) if use.key not in KNOWN]
    assert not remaining, "move these into storyline.compat:\n" + "\n".join(remaining)


def test_each_known_use_is_still_there() -> None:
    """An entry of KNOWN that is no longer found (moved into compat) is removed from it."""
    gone = KNOWN - {use.key for use in offenders(modules())}
    assert not gone, f"no longer found, remove from KNOWN: {sorted(gone)}"


SAMPLE = """
import broadcaster._backends.base
from broadcaster._backends.base import BroadcastBackend
from graphql.pyutils import _private_helper
from strawberry.handlers import Handler
from sqlalchemy import Row
from storyline.mine import Base


class Patched(Handler):
    _state = 1

    def _hook(self) -> None:
        self._theirs()
        getattr(self, "_also_theirs")

    def public(self) -> None:
        self._counter = 0


class Deeper(Patched):
    def run(self) -> None:
        self._inherited()


class Own(Base):
    def _mine(self) -> None:
        self._mine_too = 1


def reaches(schema: object, row: Row, own: Own) -> object:
    own._mine()
    return schema._schema, row._mapping
"""


def test_the_rule_finds_each_kind_of_use_and_only_those() -> None:
    path = PACKAGE / "sample.py"
    found = {use.what for use in offenders([("storyline.sample", path, ast.parse(SAMPLE))])}
    assert found == {
        "imports broadcaster._backends.base",
        "imports _private_helper",
        "Patched defines _state",
        "Patched defines _hook",
        "Patched uses self._theirs",
        "Patched uses self._also_theirs",
        "Patched uses self._counter",
        "Deeper uses self._inherited",
        "uses schema._schema",
    }
