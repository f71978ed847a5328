"""The live fast path (schema/fanout.py) against strawberry's ordinary path.

Two instances on one database: one as deployed, one whose graphql-transport-ws handler is
strawberry's own. The same watchers subscribe on both, to one project (projectStatus) and
to its owner's account (accountChanges), the project moves through a few statuses, credits
are granted, another project is made and fails, and every socket must have received the
same frames (ids and all) and the same close code on both. hypothesis writes the documents
(tests/support/live_documents.py): aliases, fragments on the union and its members,
directives, __typename at each level, ``since`` in every spelling; several watchers with
different selections, strangers, both subprotocols. The instances run with low alias and
depth limits, so that some documents are refused on both.

Each change is delivered to every watcher on both instances before the next is made: an
account's mailbox keeps only the newest state of each project, so a watcher that fell
behind on one instance could otherwise skip a state the other sent.

CI runs a bounded number of examples; a longer run:

    STORYLINE_FANOUT_EXAMPLES=500 .venv/bin/pytest tests/test_fanout_equivalence.py
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
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

from storyline.schema.fanout import LIVE, FanoutTransportWS
from tests.support import Api, new_user, token
from tests.support.live_documents import Subscription, subscriptions
from tests.support.threaded import World
from tests.support.watch import ACCOUNT_CHANGES, LEGACY_WS, TRANSPORT_WS, connected, next_message

EXAMPLES = int(os.environ.get("STORYLINE_FANOUT_EXAMPLES", "20"))
MAX_ALIASES = 6
MAX_DEPTH = 2  # a live selection is at most 2 deep (entry's fields); "Deep" is not
WAIT = 10.0


@dataclass(frozen=True)
class Socket:
    protocol: str
    stranger: bool  # authenticated as someone else than the project's owner
    subscriptions: tuple[Subscription, ...]


@dataclass
class Received:
    """What one socket received: frames by operation id, and how it was closed."""

    frames: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    close_code: int | None = None


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Socket], str]:
    documents = draw(st.lists(subscriptions(), min_size=2, max_size=4))
    # The owner watches every document where the fast path may serve it: two selections
    # of one field in one instance are what it could confuse.
    sockets = [Socket(TRANSPORT_WS, False, tuple(documents))]
    sockets += [
        Socket(
            protocol=draw(st.sampled_from([TRANSPORT_WS, LEGACY_WS])),
            stranger=draw(st.integers(min_value=0, max_value=5)) == 0,
            subscriptions=tuple(draw(st.lists(st.sampled_from(documents), min_size=1, max_size=3))),
        )
        for _ in range(draw(st.integers(min_value=0, max_value=2)))
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


@dataclass
class Delivered:
    """How many frames a watcher of the owner has had once a change has reached it: of
    projectStatus, its complete included; of accountChanges, which never completes."""

    project: int = 1  # the current state
    account: int = 2  # the balance (the project's charge), then the project (not ended)


@dataclass
class Reader:
    """One socket's frames as they come, and whether its watchers have caught up."""

    received: Received
    subscriptions: dict[str, Subscription]  # by operation id
    stranger: bool
    ended: set[str] = field(default_factory=set)
    closed: bool = False

    def caught_up(self, delivered: Delivered) -> bool:
        """Every operation has ended, or has all the frames ``delivered`` counts. A stranger
        watches an account without changes (and is refused the project)."""
        if self.closed:
            return True
        for op, subscription in self.subscriptions.items():
            if subscription.field == "accountChanges":
                # With a time, the project that ended before the watch began is sent too.
                need = 1 if self.stranger else delivered.account + subscription.since
            else:
                need = delivered.project
            if op not in self.ended and len(self.received.frames.get(op, ())) < need:
                return False
        return True

    async def read(self, ws: ClientConnection, arrived: asyncio.Event) -> None:
        """Every frame until all operations have ended, the socket has closed, or the
        example is over."""
        try:
            while len(self.ended) < len(self.subscriptions):
                message = await next_message(ws)
                self.received.frames.setdefault(message["id"], []).append(message)
                if message["type"] in ("complete", "error"):
                    self.ended.add(message["id"])
                arrived.set()
        except websockets.ConnectionClosed as closed:
            self.received.close_code = closed.rcvd.code if closed.rcvd else None
            self.closed = True
            arrived.set()


@dataclass
class Watchers:
    """Every socket's reader, on both instances, and what has reached them so far."""

    readers: list[Reader]
    arrived: asyncio.Event  # set by a reader on each frame
    delivered: Delivered = field(default_factory=Delivered)

    async def settle(self, *, project: int = 0, account: int = 0) -> None:
        """Wait until this many more frames have reached every watcher of the owner."""
        self.delivered.project += project
        self.delivered.account += account
        try:
            async with asyncio.timeout(WAIT):
                while not all(reader.caught_up(self.delivered) for reader in self.readers):
                    self.arrived.clear()
                    await self.arrived.wait()
        except TimeoutError:
            raise AssertionError([reader.received for reader in self.readers]) from None


async def watch_both(
    twins: Twins, sockets: Sequence[Socket], end: str
) -> tuple[list[Received], list[Received]]:
    owner, stranger = new_user(), new_user()
    # A project that has ended: accountChanges sends it only when given a time before it.
    ended = (await twins.fast.generate(owner, quality="SD"))["data"]["generateStory"]["id"]
    await reported(twins.fast, projectId=ended, status="COMPLETED", resultUrl="https://v/0")
    generated = await twins.fast.generate(owner)
    project_id = generated["data"]["generateStory"]["id"]
    # The stranger's account exists before either instance watches it.
    await twins.fast.data("{ me { balance } }", auth=token(stranger))
    watchers = Watchers([], asyncio.Event())
    async with AsyncExitStack() as stack:
        tasks: list[asyncio.Task[None]] = []
        for api in (twins.fast, twins.ordinary):
            for socket in sockets:
                auth = token(stranger if socket.stranger else owner)
                ws = await stack.enter_async_context(connected(api.url, auth, socket.protocol))
                ops = {f"w{n}": s for n, s in enumerate(socket.subscriptions)}
                kind = "subscribe" if socket.protocol == TRANSPORT_WS else "start"
                for op, subscription in ops.items():
                    message = {"id": op, "type": kind, "payload": subscription.payload(project_id)}
                    await ws.send(json.dumps(message))
                reader = Reader(Received(), ops, socket.stranger)
                watchers.readers.append(reader)
                tasks.append(asyncio.create_task(reader.read(ws, watchers.arrived)))
        try:
            await watchers.settle()  # every watcher has its current state before any change
            await drive(twins, owner, project_id, end, watchers)
        finally:
            for task in tasks:
                task.cancel()
    half = len(sockets)
    everything = [reader.received for reader in watchers.readers]
    return everything[:half], everything[half:]


async def drive(twins: Twins, owner: str, project_id: str, end: str, watchers: Watchers) -> None:
    """The project's reports to its end, then what else changes on the owner's account: a
    grant, a new project's charge and states, its failure and refund. Each change reaches
    every watcher before the next is made."""
    api, settle = twins.fast, watchers.settle
    for progress, stage in ((30, "script"), (70, "storyboard")):
        await reported(
            api, projectId=project_id, status="PROCESSING", progress=progress, stage=stage
        )
        await settle(project=1, account=1)
    if end == "COMPLETED":
        await reported(api, projectId=project_id, status=end, resultUrl="https://cdn.example/v.mp4")
        await settle(project=2, account=1)  # the last state, then complete
    else:
        await reported(api, projectId=project_id, status=end, errorMessage='no "GPU" \\ ünïcode')
        await settle(project=2, account=2)  # and on the account, the refund
    await api.grant(owner, 100)  # enough for another project
    await settle(account=1)
    # The video service answers once the gate opens: the new project's charge and PENDING
    # state reach every watcher before its PROCESSING state is written.
    gate = twins.world.fake.gate
    gate.clear()
    generating = asyncio.create_task(api.generate(owner, prompt="A dog [gated]"))
    try:
        await settle(account=2)
    finally:
        gate.set()
    answer = await generating
    assert "errors" not in answer, answer
    await settle(account=1)
    second = answer["data"]["generateStory"]["id"]
    await reported(api, projectId=second, status="FAILED", errorMessage="the renderer fell over")
    await settle(account=2)


async def reported(api: Api, **report: Any) -> None:
    answer = await api.report(**report)
    assert "errors" not in answer, answer


# --- the property -----------------------------------------------------------------------------


def test_every_watcher_receives_what_the_ordinary_path_sends(
    twins: Twins, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    # Watches the fast path served itself, by field: the comparison is not vacuous.
    served: Counter[str] = Counter()
    decide = FanoutTransportWS.served

    def counted(handler: FanoutTransportWS, operation: Any) -> Any:
        decided = decide(handler, operation)
        if decided is not None:
            [name] = [name for name, live in LIVE.items() if live is decided[0].field]
            served[name] += 1
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
    assert served["projectStatus"] > 0
    assert served["accountChanges"] > 0


def test_an_account_watcher_sees_both_members_of_the_union(twins: Twins) -> None:
    """What the property's account documents are rendered against: every kind of change,
    and with a time, the project that ended before the watch began."""
    watches = (
        Subscription(ACCOUNT_CHANGES, {}, None, "accountChanges"),
        Subscription(ACCOUNT_CHANGES, {"since": "2020-01-01T00:00:00Z"}, None, "accountChanges"),
    )
    [received] = twins.received([Socket(TRANSPORT_WS, False, watches)], end="FAILED")
    seen: dict[str, list[str]] = {}
    for op, frames in received.frames.items():
        changes = [frame["payload"]["data"]["accountChanges"] for frame in frames]
        seen[op] = [
            change["entry"]["kind"] if change["__typename"] == "BalanceChange" else change["status"]
            for change in changes
        ]
    then = [
        *("PROCESSING", "PROCESSING", "FAILED", "REFUND"),  # the project's reports, its refund
        "GRANT",
        *("PENDING", "CHARGE", "PROCESSING"),  # a new project, its charge written with it
        *("FAILED", "REFUND"),
    ]
    # First the balance (the project's charge), then the project (and the one that ended).
    assert seen == {
        "w0": ["CHARGE", "PROCESSING", *then],
        "w1": ["CHARGE", "COMPLETED", "PROCESSING", *then],
    }


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
