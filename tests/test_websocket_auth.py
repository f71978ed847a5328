"""Where a WebSocket's token may be, and why one is refused: real sockets, both subprotocols.

The three places (README, "WebSocket authentication"): the connection_init payload's
``Authorization``, its ``headers.Authorization`` (Apollo's form), and the upgrade
request's ``Authorization`` header; keys in any case; the payload wins.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from tests.support import Api, bearer, new_user, token
from tests.support.watch import (
    LEGACY_WS,
    TRANSPORT_WS,
    close_frame,
    next_event,
    next_message,
    start,
    ws_url,
)

PROTOCOLS = [TRANSPORT_WS, LEGACY_WS]
FORBIDDEN = 4403
NO_TOKEN = 'Forbidden: No token: send {"Authorization": "Bearer <token>"} in connection_init.'
EXPIRED = "Forbidden: The token has expired."
INVALID = "Forbidden: The token is not valid."
NOT_BEARER = "Forbidden: The Authorization header must be 'Bearer <token>'."

_absent = object()


@asynccontextmanager
async def initialised(
    api: Api, protocol: str, payload: object = _absent, header: str | None = None
) -> AsyncIterator[ClientConnection]:
    """A socket that has sent connection_init with ``payload`` (none at all if absent), its
    upgrade request carrying ``header`` as its Authorization."""
    headers = {} if header is None else {"Authorization": header}
    async with websockets.connect(
        ws_url(api.url),
        subprotocols=[Subprotocol(protocol)],
        additional_headers=headers,
        compression=None,
    ) as ws:
        init: dict[str, Any] = {"type": "connection_init"}
        if payload is not _absent:
            init["payload"] = payload
        await ws.send(json.dumps(init))
        yield ws


async def watches_own_project(api: Api, protocol: str, user: str, **sent: Any) -> None:
    """Connecting as ``sent`` says is acknowledged, and the caller is ``user``: the first
    event of ``user``'s project arrives (anyone else is answered NOT_FOUND)."""
    project = (await api.generate(user))["data"]["generateStory"]
    async with initialised(api, protocol, **sent) as ws:
        ack = await next_message(ws, 5)
        assert ack["type"] == "connection_ack", ack
        await start(ws, project["id"])
        event = await next_event(ws, within=5)
    assert (event["projectId"], event["status"]) == (project["id"], "PROCESSING")


async def refusal(api: Api, protocol: str, **sent: Any) -> str:
    """The reason a connection_init is refused with, checked to be given the same way on
    either subprotocol: closed with 4403 and the reason, which legacy graphql-ws also
    sends in connection_error first."""
    async with initialised(api, protocol, **sent) as ws:
        error = await next_message(ws, 5) if protocol == LEGACY_WS else None
        closed = await close_frame(ws)
    assert closed.code == FORBIDDEN, closed
    if error is not None:
        assert error == {"type": "connection_error", "payload": {"message": closed.reason}}
    return closed.reason


PLACES = {
    "payload": lambda value: {"payload": {"Authorization": value}},
    "payload, lower case": lambda value: {"payload": {"authorization": value}},
    "Apollo's headers": lambda value: {"payload": {"headers": {"Authorization": value}}},
    "Apollo's headers, lower case": lambda value: {
        "payload": {"HEADERS": {"authorization": value}}
    },
    "upgrade header, empty payload": lambda value: {"payload": {}, "header": value},
    "upgrade header, null payload values": lambda value: {
        "payload": {"Authorization": None, "headers": {"Authorization": ""}},
        "header": value,
    },
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("place", PLACES.values(), ids=PLACES.keys())
async def test_a_token_is_accepted_in_each_place(api: Api, protocol: str, place: Any) -> None:
    user = new_user()
    await watches_own_project(api, protocol, user, **place(bearer(user)))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_upgrade_header_alone_is_enough_without_a_payload(
    api: Api, protocol: str
) -> None:
    # graphql-transport-ws takes a missing payload as {}; legacy graphql-ws as null.
    user = new_user()
    await watches_own_project(api, protocol, user, header=bearer(user))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_payload_wins_over_its_headers_and_the_upgrade_header(
    api: Api, protocol: str
) -> None:
    user, other = new_user(), new_user()
    payload = {"Authorization": bearer(user), "headers": {"Authorization": bearer(other)}}
    await watches_own_project(api, protocol, user, payload=payload, header=bearer(other))
    user = new_user()  # one project each: a second would cost more credits than a user has
    apollo = {"headers": {"Authorization": bearer(user)}}
    await watches_own_project(api, protocol, user, payload=apollo, header=bearer(other))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_bad_token_in_the_payload_is_refused_despite_a_good_header(
    api: Api, protocol: str
) -> None:
    sent = {"payload": {"Authorization": "Bearer not-a-token"}, "header": bearer(new_user())}
    assert await refusal(api, protocol, **sent) == INVALID


REFUSED = {
    "no token": ({"payload": {}}, NO_TOKEN),
    "no payload": ({}, NO_TOKEN),
    "empty values": ({"payload": {"Authorization": "", "headers": {}}}, NO_TOKEN),
    "expired": ({"payload": {"Authorization": bearer("x", ttl=-5)}}, EXPIRED),
    "expired in the header": ({"header": bearer("x", ttl=-5)}, EXPIRED),
    "invalid": ({"payload": {"Authorization": "Bearer not-a-token"}}, INVALID),
    "invalid in Apollo's headers": (
        {"payload": {"headers": {"Authorization": "Bearer not.a.jwt"}}},
        INVALID,
    ),
    "a raw token": ({"payload": {"Authorization": token("x")}}, NOT_BEARER),
    "not a string": (
        {"payload": {"Authorization": ["Bearer", token("x")]}},
        "Forbidden: Authorization must be a string: 'Bearer <token>'.",
    ),
    "named twice": (
        {"payload": {"Authorization": bearer("a"), "authorization": bearer("b")}},
        "Forbidden: connection_init's payload has 'authorization' more than once.",
    ),
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("sent", "reason"), REFUSED.values(), ids=REFUSED.keys())
async def test_a_refusal_says_why_and_never_echoes_the_token(
    api: Api, protocol: str, sent: dict[str, Any], reason: str
) -> None:
    given = await refusal(api, protocol, **sent)
    assert given == reason
    sent_tokens = re.findall(r"ey[\w-]+\.[\w-]+\.[\w-]*|not[\w.-]+", json.dumps(sent))
    assert not [sent_token for sent_token in sent_tokens if sent_token in given]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_raw_token_as_the_payload_is_a_protocol_error_with_a_reason(
    api: Api, protocol: str
) -> None:
    async with initialised(api, protocol, payload=token(new_user())) as ws:
        if protocol == LEGACY_WS:
            assert (await next_message(ws, 5))["type"] == "connection_error"
        closed = await close_frame(ws)
    assert closed.code == 4400
    assert "payload" in closed.reason
