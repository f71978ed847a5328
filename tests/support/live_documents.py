"""Subscription documents for the live fields, as hypothesis writes them.

A document subscribes to ``projectStatus`` or ``accountChanges`` with a selection drawn
from the types below them: fields with root and inner aliases, __typename at each level,
inline fragments with and without a type condition (on a union member, on the union
itself, or on the type they are in), named fragments, ``@include``/``@skip`` on literals
and variables (with and without defaults), the root field behind a fragment of its own
now and then, named operations next to others. ``projectStatus`` takes its id literally
or as a variable; ``accountChanges`` takes ``since`` as a literal, a variable (given,
defaulted or left out) or not at all, always a time before the test's changes, so that
every instance answers it alike, or now and then one out of range, which is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

ID = "%PROJECT_ID%"  # where a document spells the project id literally
PROJECT_FIELDS = [
    "projectId",
    "status",
    "version",
    "progress",
    "stage",
    "errorMessage",
    "resultUrl",
    "updatedAt",
    "__typename",
]
# Each type's fields, with the type of the selection a field takes (None: a leaf).
FIELDS: dict[str, dict[str, str | None]] = {
    "ProjectStatusEvent": dict.fromkeys(PROJECT_FIELDS),
    "BalanceChange": {"balance": None, "entry": "LedgerEntry", "__typename": None},
    "LedgerEntry": dict.fromkeys(
        ["id", "kind", "amount", "balanceAfter", "projectId", "reason", "createdAt", "__typename"]
    ),
    "AccountChange": {"__typename": None},
}
# The type conditions a fragment may have inside a selection of each type: its own, and
# the union's or its members' where their possible types meet.
FRAGMENT_TYPES = {
    "ProjectStatusEvent": ["ProjectStatusEvent", "AccountChange"],
    "BalanceChange": ["BalanceChange", "AccountChange"],
    "LedgerEntry": ["LedgerEntry"],
    "AccountChange": ["AccountChange", "ProjectStatusEvent", "BalanceChange"],
}
# What a selection is mostly made of: on a union, fragments (its one field is __typename).
KINDS = {"AccountChange": ["field", "inline", "typed", "typed", "typed", "spread", "spread"]}
ROOTS = {"projectStatus": "ProjectStatusEvent", "accountChanges": "AccountChange"}
SINCE = [  # before anything a test changes
    "2020-01-01T00:00:00Z",
    "2020-01-01T05:30:00+05:30",
    "2020-01-01T00:00:00",  # no offset: UTC
]
OUT_OF_RANGE = "0001-01-01T00:00:00+14:00"  # a DateTime, but no instant in UTC
OTHER_OPERATIONS = [
    "query Price { price }",
    "query Deep { me { ledger { edges { node { id } } } } }",  # deeper than a live selection
]


@dataclass(frozen=True)
class Subscription:
    document: str
    variables: dict[str, Any]  # "id" is added when the document declares $id
    operation_name: str | None
    field: str = "projectStatus"
    since: bool = False  # accountChanges is given a time: it sends terminal projects too

    def payload(self, project_id: str) -> dict[str, Any]:
        variables = dict(self.variables)
        if "$id" in self.document:
            variables["id"] = project_id
        payload: dict[str, Any] = {"query": self.document.replace(ID, project_id)}
        payload["variables"] = variables
        if self.operation_name is not None:
            payload["operationName"] = self.operation_name
        return payload


@st.composite
def subscriptions(draw: st.DrawFn) -> Subscription:
    fragments: list[str] = []
    flags: set[str] = set()
    definitions: list[str] = []
    variables: dict[str, Any] = {}

    def condition() -> str:
        directive = draw(st.sampled_from(["", "", "", "include", "skip"]))
        if not directive:
            return ""
        argument = draw(st.sampled_from(["true", "false", "$b0", "$b1", "$b2"]))
        if argument.startswith("$"):
            flags.add(argument[1:])
        return f" @{directive}(if: {argument})"

    def selection(within: str, depth: int) -> str:
        kinds = KINDS.get(within, ["field"] * 4 + ["inline", "typed", "spread"])
        kinds = kinds if depth < 3 else ["field"]
        count = draw(st.integers(min_value=1, max_value=4 if depth == 0 else 3))
        return " ".join(item(within, draw(st.sampled_from(kinds)), depth) for _ in range(count))

    def item(within: str, kind: str, depth: int) -> str:
        if kind == "field":
            name = draw(st.sampled_from(list(FIELDS[within])))
            below = FIELDS[within][name]
            alias = draw(st.sampled_from(["", "", "", f"a1{name}: ", f"a2{name}: "]))
            inner = "" if below is None else f" {{ {selection(below, depth + 1)} }}"
            return f"{alias}{name}{condition()}{inner}"
        if kind == "inline":
            return f"...{condition()} {{ {selection(within, depth + 1)} }}"
        on = draw(st.sampled_from(FRAGMENT_TYPES[within]))
        if kind == "typed":
            return f"... on {on}{condition()} {{ {selection(on, depth + 1)} }}"
        name = f"F{len(fragments)}"
        fragments.append(name)  # its place, before the fragments its body spreads
        at = len(fragments) - 1
        fragments[at] = f"fragment {name} on {on} {{ {selection(on, depth + 1)} }}"
        return f"...{name}{condition()}"

    field = draw(st.sampled_from(sorted(ROOTS)))
    root_alias = draw(st.sampled_from(["", "", "live: ", "projectStatus: ", "accountChanges: "]))
    given = False
    if field == "projectStatus":
        literal_id = draw(st.booleans())
        if not literal_id:
            definitions.append("$id: ID!")
        arguments = f'(projectId: "{ID}")' if literal_id else "(projectId: $id)"
    else:
        arguments, given = since(draw, definitions, variables)
    inner = selection(ROOTS[field], 0)
    root = f"{root_alias}{field}{arguments} {{ {inner} }}"
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        # The root field behind a fragment of its own.
        fragments.append(f"fragment Root on Subscription {{ {root} }}")
        root = "...Root"
    for flag in sorted(flags):
        if draw(st.booleans()):
            definitions.append(f"${flag}: Boolean = {draw(st.sampled_from(['true', 'false']))}")
            if draw(st.booleans()):
                variables[flag] = draw(st.booleans())
        else:
            definitions.append(f"${flag}: Boolean!")
            variables[flag] = draw(st.booleans())
    signature = f"({', '.join(definitions)})" if definitions else ""
    name = draw(st.sampled_from([None, "Watch"]))
    operation = f"subscription {name or ''}{signature} {{ {root} }}"
    others = []
    if name is not None and draw(st.booleans()):
        others = [draw(st.sampled_from(OTHER_OPERATIONS))]
    document = "\n".join([operation, *others, *fragments])
    sent_name = name if others else draw(st.sampled_from([None, name]))
    return Subscription(document, variables, sent_name, field, given)


def since(draw: st.DrawFn, definitions: list[str], variables: dict[str, Any]) -> tuple[str, bool]:
    """accountChanges' arguments, and whether they give it a time; a variable's definition
    and value go to ``definitions`` and ``variables``."""
    how = draw(st.sampled_from(["absent", "literal", "variable", "variable", "null"]))
    when = draw(st.sampled_from(SINCE))
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        when = OUT_OF_RANGE
    if how == "absent":
        return "", False
    if how == "null":
        return "(since: null)", False
    if how == "literal":
        return f'(since: "{when}")', True
    kind = draw(st.sampled_from(["DateTime!", "DateTime", f'DateTime = "{when}"']))
    definitions.append(f"$since: {kind}")
    given = kind != "DateTime"  # required, or defaulted
    if kind == "DateTime!":
        variables["since"] = when
    elif draw(st.booleans()):
        variables["since"] = draw(st.sampled_from([when, None]))
        given = variables["since"] is not None
    return "(since: $since)", given
