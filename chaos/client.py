"""GraphQL over HTTP, spread over the instances: each call goes to the next one in turn,
and a call that could not connect (nothing was sent) goes on to the next, as a client
behind a load balancer with health checks would see it."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

# What a call can end in besides "ok" and an extensions.code.
TIMEOUT = "timeout"  # no answer in time: the request may or may not have been served
UNREACHABLE = "unreachable"  # no instance took the connection: nothing was sent
DROPPED = "dropped"  # the connection broke after the request was sent


@dataclass(frozen=True)
class Answer:
    outcome: str  # "ok", an extensions.code, TIMEOUT, UNREACHABLE, DROPPED or "http-NNN"
    data: dict[str, Any] | None
    sent: float  # wall clock
    instance: int
    request_id: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def request_id() -> str:
    return f"chaos-{uuid.uuid4().hex}"


class Spread:
    """Which instance comes next."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls  # filled in place once the instances have their ports
        self._turn = itertools.count()

    def next(self) -> int:
        return next(self._turn) % len(self.urls)


class Api:
    def __init__(self, spread: Spread) -> None:
        self.spread = spread
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        # No pooled connection outlives a fault silently: each instance restart closes them.
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def call(
        self, query: str, variables: dict[str, Any], *, token: str, patience: float
    ) -> Answer:
        """One request, to each instance in turn until one takes the connection."""
        assert self.session is not None
        body = json.dumps({"query": query, "variables": variables})
        rid = request_id()
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "X-Request-ID": rid,  # what the instance logs the request under
        }
        sent = time.time()
        instance = self.spread.next()
        for _ in self.spread.urls:
            url = f"{self.spread.urls[instance]}/graphql"
            try:
                async with (
                    asyncio.timeout(patience),
                    self.session.post(url, data=body, headers=headers) as response,
                ):
                    status = response.status
                    text = await response.text()
            except TimeoutError:
                return Answer(TIMEOUT, None, sent, instance, rid)
            except aiohttp.ClientConnectorError:
                instance = (instance + 1) % len(self.spread.urls)
                continue
            except (aiohttp.ClientError, OSError) as error:
                return Answer(DROPPED, None, sent, instance, rid, type(error).__name__)
            return answer_of(status, text, sent, instance, rid)
        return Answer(UNREACHABLE, None, sent, instance, rid)


def answer_of(status: int, text: str, sent: float, instance: int, rid: str) -> Answer:
    try:
        body = json.loads(text)
    except ValueError:
        # HAProxy's own answers: no instance to send to (503), or the one it sent to went
        # away before answering (502) or did not answer in time (504).
        balancer = {503: UNREACHABLE, 502: DROPPED, 504: TIMEOUT}.get(status)
        if balancer is not None:
            return Answer(balancer, None, sent, instance, rid, f"HTTP {status}")
        return Answer(f"http-{status}", None, sent, instance, rid, text[:200])
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors:
        code = (errors[0].get("extensions") or {}).get("code") or f"http-{status}"
        return Answer(code, None, sent, instance, rid, json.dumps(errors[0])[:300])
    if status != 200 or not isinstance(body.get("data"), dict):
        return Answer(f"http-{status}", None, sent, instance, rid, text[:200])
    return Answer("ok", body["data"], sent, instance, rid)
