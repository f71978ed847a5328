"""The projectStatus fast path (schema/fanout.py) against strawberry's ordinary path.

Two instances on one database: one as deployed, one whose graphql-transport-ws handler is
strawberry's own. The same watchers subscribe to one project on both, the project moves
through a few statuses, and every socket must have received the same frames (ids and
all) and the same close code on both. hypothesis writes the documents: root and inner
aliases, named and inline fragments, @include/@skip on literals and variables (with and
without defaults), __typename, literal or variable ids, named operations next to others,
several watchers with different selections, strangers, both subprotocols. The instances
run with low alias and depth limits, so that some documents are refused on both.

CI runs a bounded number of examples; a longer run:

    STORYLINE_FANOUT_EXAMPLES=500 .venv/bin/pytest tests/test_fanout_equivalence.py
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from websockets.asyncio.client import ClientConnection

from storyline.schema.fanout import FanoutTransportWS
from tests.support import Api, new_user, token
from tests.support.threaded import World
from tests.support.watch import LEGACY_WS, TRANSPORT_WS, connected, next_message

EXAMPLES = int(os.environ.get("STORYLINE_FANOUT_EXAMPLES", "20"))
MAX_ALIASES = 6
MAX_DEPTH = 2  # a projectStatus selection is 1 deep; the other operations below are not
FIELDS = [
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
ID = "%PROJECT_ID%"  # where a document spells the project id literally
OTHER_OPERATIONS = [
    "query Price { price }",
    "query Deep { me { ledger { edges { node { id } } } } }",  # deeper than MAX_DEPTH
]


@dataclass(frozen=True)
class Subscription:
    document: str
    variables: dict[str, Any]  # "id" is added when the document declares $id
    operation_name: str | None

    def payload(self, project_id: str) -> dict[str, Any]:
        variables = dict(self.variables)
        if "$id" in self.document:
            variables["id"] = project_id
        payload: dict[str, Any] = {"query": self.document.replace(ID, project_id)}
        payload["variables"] = variables
        if self.operation_name is not None:
            payload["operationName"] = self.operation_name
        return payload


@dataclass(frozen=True)
class Socket:
    protocol: str
    stranger: bool  # authenticated as someone who may not see the project
    subscriptions: tuple[Subscription, ...]


@dataclass
class Received:
    """What one socket received: frames by operation id, and how it was closed."""

    frames: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    close_code: int | None = None


# --- documents ----------------------------------------------------------------------------


@st.composite
def subscriptions(draw: st.DrawFn) -> Subscription:
    fragments: list[str] = []
    flags: set[str] = set()

    def condition() -> str:
        directive = draw(st.sampled_from(["", "", "", "include", "skip"]))
        if not directive:
            return ""
        argument = draw(st.sampled_from(["true", "false", "$b0", "$b1", "$b2"]))
        if argument.startswith("$"):
            flags.add(argument[1:])
        return f" @{directive}(if: {argument})"

    def selection(depth: int) -> str:
        kinds = ["field"] * 4 + (["inline", "typed", "spread"] if depth < 3 else [])
        count = draw(st.integers(min_value=1, max_value=4))
        return " ".join(item(draw(st.sampled_from(kinds)), depth) for _ in range(count))

    def item(kind: str, depth: int) -> str:
        if kind == "field":
            name = draw(st.sampled_from(FIELDS))
            alias = draw(st.sampled_from(["", "", f"a1{name}: ", f"a2{name}: "]))
            return f"{alias}{name}{condition()}"
        if kind == "inline":
            return f"...{condition()} {{ {selection(depth + 1)} }}"
        if kind == "typed":
            return f"... on ProjectStatusEvent{condition()} {{ {selection(depth + 1)} }}"
        name = f"F{len(fragments)}"
        fragments.append(name)  # its place, before the fragments its body spreads
        at = len(fragments) - 1
        fragments[at] = f"fragment {name} on ProjectStatusEvent {{ {selection(depth + 1)} }}"
        return f"...{name}{condition()}"

    root_alias = draw(st.sampled_from(["", "", "live: ", "projectStatus: ", "w: "]))
    literal_id = draw(st.booleans())
    argument = f'"{ID}"' if literal_id else "$id"
    inner = selection(0)
    root = f"{root_alias}projectStatus(projectId: {argument}) {{ {inner} }}"
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        # The root field behind a fragment of its own.
        fragments.append(f"fragment Root on Subscription {{ {root} }}")
        root = "...Root"
    definitions = [] if literal_id else ["$id: ID!"]
    variables: dict[str, Any] = {}
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
    return Subscription(document, variables, sent_name)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Socket], str]:
    documents = draw(st.lists(subscriptions(), min_size=1, max_size=3))
    sockets = [
        Socket(
            protocol=draw(st.sampled_from([TRANSPORT_WS, LEGACY_WS])),
            stranger=draw(st.integers(min_value=0, max_value=5)) == 0,
            subscriptions=tuple(draw(st.lists(st.sampled_from(documents), min_size=1, max_size=3))),
        )
        for _ in range(draw(st.integers(min_value=1, max_value=3)))
    ]
    return sockets, draw(st.sampled_from(["COMPLETED", "FAILED"]))


# --- two instances, one database ------------------------------------------------------------


@dataclass
class Twins:
    world: World
    fast: Api
    ordinary: Api

    def received(self, sockets: Sequence[Socket], end: str = "COMPLETED") -> list[Received]:
        """What each socket received from the fast instance, once checked equal to what
        the ordinary one sent."""
        fast, ordinary = self.world.loop.run(watch_both(self, sockets, end))
        assert fast == ordinary
        return fast


def ordinary_path_only(api: Api) -> None:
    """graphql-transport-ws through strawberry's own handler: no fast path."""
    graphql = api.app.graphql  # type: ignore[attr-defined]  # StorylineApp's view
    graphql.graphql_transport_ws_handler_class = BaseGraphQLTransportWSHandler


@pytest.fixture(scope="module")
def twins(server_url: str) -> Iterator[Twins]:
    world = World(server_url, max_query_aliases=MAX_ALIASES, max_query_depth=MAX_DEPTH)
    ordinary = world.another()
    ordinary_path_only(ordinary)
    yield Twins(world, world.api, ordinary)
    world.close()


async def watch_both(
    twins: Twins, sockets: Sequence[Socket], end: str
) -> tuple[list[Received], list[Received]]:
    owner = new_user()
    generated = await twins.fast.generate(owner)
    project_id = generated["data"]["generateStory"]["id"]
    async with AsyncExitStack() as stack:
        readers: list[tuple[Received, asyncio.Task[None]]] = []
        started: list[asyncio.Event] = []
        for api in (twins.fast, twins.ordinary):
            for socket in sockets:
                auth = token(new_user() if socket.stranger else owner)
                ws = await stack.enter_async_context(connected(api.url, auth, socket.protocol))
                ops = [f"w{n}" for n in range(len(socket.subscriptions))]
                kind = "subscribe" if socket.protocol == TRANSPORT_WS else "start"
                for op, subscription in zip(ops, socket.subscriptions, strict=True):
                    message = {"id": op, "type": kind, "payload": subscription.payload(project_id)}
                    await ws.send(json.dumps(message))
                received, first = Received(), asyncio.Event()
                task = asyncio.create_task(read(ws, ops, received, first))
                readers.append((received, task))
                started.append(first)
        try:
            # Every watcher has its current state before anything changes.
            await asyncio.wait_for(asyncio.gather(*(s.wait() for s in started)), 10)
            await drive(twins.fast, project_id, end)
            await asyncio.wait_for(asyncio.gather(*(task for _, task in readers)), 10)
        except TimeoutError:
            raise AssertionError([r for r, _ in readers]) from None
        finally:
            for _, task in readers:
                task.cancel()
    half = len(sockets)
    everything = [received for received, _ in readers]
    return everything[:half], everything[half:]


async def read(
    ws: ClientConnection, ops: list[str], received: Received, first: asyncio.Event
) -> None:
    """Every frame of ``ops`` until all have ended (or the socket has closed)."""
    ended: set[str] = set()
    try:
        while len(ended) < len(ops):
            message = await next_message(ws)
            received.frames.setdefault(message["id"], []).append(message)
            if message["type"] in ("complete", "error"):
                ended.add(message["id"])
            if len(received.frames) == len(ops):
                first.set()
    except websockets.ConnectionClosed as closed:
        received.close_code = closed.rcvd.code if closed.rcvd else None
    first.set()


async def drive(api: Api, project_id: str, end: str) -> None:
    reports: list[dict[str, Any]] = [
        {"status": "PROCESSING", "progress": 30, "stage": "script"},
        {"status": "PROCESSING", "progress": 70, "stage": "storyboard"},
        {"status": end, "resultUrl": "https://cdn.example/v.mp4"}
        if end == "COMPLETED"
        else {"status": end, "errorMessage": 'no "GPU" \\ left, ünïcode'},
    ]
    for report in reports:
        answer = await api.report(projectId=project_id, **report)
        assert "errors" not in answer, answer


# --- the property -----------------------------------------------------------------------------


def test_every_watcher_receives_what_the_ordinary_path_sends(
    twins: Twins, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    served = 0  # watches the fast path served itself: the comparison is not vacuous
    decide = FanoutTransportWS.served

    def counted(handler: FanoutTransportWS, operation: Any) -> Any:
        nonlocal served
        decided = decide(handler, operation)
        served += decided is not None
        return decided

    monkeypatch.setattr(FanoutTransportWS, "served", counted)

    @given(scenario=scenarios())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def check(scenario: tuple[list[Socket], str]) -> None:
        nonlocal calls
        calls += 1
        sockets, end = scenario
        twins.received(sockets, end)

    check()
    assert calls > 0
    assert served > 0


# --- what the issue found, as fixed cases ------------------------------------------------------

WATCH = "{ status version }"


def watching(query: str, *, operation_name: str | None = None) -> Subscription:
    return Subscription(query, {}, operation_name)


def test_a_root_alias_shapes_only_its_own_watchers_frames(twins: Twins) -> None:
    aliased = watching(f"subscription($id: ID!) {{ live: projectStatus(projectId: $id) {WATCH} }}")
    plain = watching(f"subscription($id: ID!) {{ projectStatus(projectId: $id) {WATCH} }}")
    for first, second in ((aliased, plain), (plain, aliased)):
        [received] = twins.received([Socket(TRANSPORT_WS, False, (first, second))])
        for op, subscription in (("w0", first), ("w1", second)):
            key = "live" if subscription is aliased else "projectStatus"
            frames = received.frames[op]
            assert [f["type"] for f in frames] == ["next"] * 4 + ["complete"]
            assert all(list(f["payload"]["data"]) == [key] for f in frames[:-1])


def test_the_alias_limit_refuses_a_subscription_as_it_refuses_a_query(twins: Twins) -> None:
    aliases = " ".join(f"a{n}: status" for n in range(MAX_ALIASES + 1))
    query = f"subscription($id: ID!) {{ projectStatus(projectId: $id) {{ {aliases} }} }}"
    [received] = twins.received([Socket(TRANSPORT_WS, False, (watching(query),))])
    [refusal] = received.frames["w0"]
    assert refusal["type"] == "error"
    assert refusal["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert refusal["payload"][0]["message"] == (
        f"{MAX_ALIASES + 1} aliases found. Allowed: {MAX_ALIASES}"
    )


def test_the_depth_limit_refuses_a_document_on_both_paths(twins: Twins) -> None:
    query = (
        "subscription Watch($id: ID!) { projectStatus(projectId: $id) { status } }\n"
        "query Deep { me { ledger { edges { node { id } } } } }"
    )
    subscription = watching(query, operation_name="Watch")
    [received] = twins.received([Socket(TRANSPORT_WS, False, (subscription,))])
    [refusal] = received.frames["w0"]
    assert refusal["type"] == "error"
    assert refusal["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert (
        refusal["payload"][0]["message"] == f"'Deep' exceeds maximum operation depth of {MAX_DEPTH}"
    )


def test_the_token_limit_refuses_a_subscription_on_both_paths(twins: Twins) -> None:
    fields = " ".join(["status"] * 2001)
    query = f"subscription($id: ID!) {{ projectStatus(projectId: $id) {{ {fields} }} }}"
    [received] = twins.received([Socket(TRANSPORT_WS, False, (watching(query),))])
    [refusal] = received.frames["w0"]
    assert refusal["type"] == "error"
    assert refusal["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "more than 2000 tokens" in refusal["payload"][0]["message"]
