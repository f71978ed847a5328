"""The floor: the least a server can do for the same work, on the same uvicorn settings.

- ``/graphql`` (WebSocket): a bare graphql-transport-ws endpoint. One asyncpg LISTEN on
  the trigger's channel; each notification becomes the ``next`` message Storyline would
  send (same fields, same bytes), built once and sent to every subscriber of the project.
  No GraphQL execution, no auth, no per-subscriber state beyond the socket.
- ``POST /generate``: generateStory's SQL (Storyline's own one-statement Tx1: PENDING row,
  charge, ledger; the account first on first use), the same upstream call with aiohttp, then
  the confirming UPDATE; no GraphQL.

Run: ``python -m bench.floor --port P --database-url URL --jwt-secret S --upstream-url U``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import asyncpg
import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from storyline.config import Settings
from storyline.persistence.database import DriverStatement, Transaction
from storyline.persistence.reservations import RESERVE
from storyline.server import uvicorn_options

CHANNEL = "storyline_project"
PRICES = {"SD": 40, "HD": 60, "FULL_HD": 80}
UPSTREAM_QUALITY = {"SD": "sd", "HD": "hd", "FULL_HD": "full_hd"}
UPSTREAM_RATIO = {
    "LANDSCAPE_16_9": "16:9",
    "PORTRAIT_9_16": "9:16",
    "SQUARE_1_1": "1:1",
    "CLASSIC_4_3": "4:3",
}
SIGNUP_CREDITS = 100
# Storyline's own Tx1 statement, compiled for asyncpg: the floor runs the very same SQL.
TX1 = DriverStatement.of(RESERVE)


class Hub:
    """Project id -> subscribers; one fan-out task so sends to one socket stay in order."""

    def __init__(self) -> None:
        self.subscribers: dict[str, dict[WebSocket, str]] = {}
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    def notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.queue.put_nowait(payload)

    async def fan_out(self) -> None:
        while True:
            payload = await self.queue.get()
            row = json.loads(payload)
            targets = self.subscribers.get(str(row["id"]))
            if not targets:
                continue
            event = json.dumps(
                {
                    "projectId": str(row["id"]),
                    "status": row["status"],
                    "version": row["version"],
                    "progress": row["progress"],
                    "stage": row["stage"],
                    "errorMessage": row["error_message"],
                    "resultUrl": row["result_url"],
                    "updatedAt": row["updated_at"],
                },
                separators=(",", ":"),
            )
            suffix = ',"type":"next","payload":{"data":{"projectStatus":' + event + "}}}"
            for socket, operation in list(targets.items()):
                try:
                    await socket.send_text('{"id":' + operation + suffix)
                except (RuntimeError, WebSocketDisconnect, OSError):
                    targets.pop(socket, None)


def create_app(database_url: str, jwt_secret: str, upstream_url: str) -> Starlette:
    hub = Hub()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["pool"] = await asyncpg.create_pool(database_url, min_size=2, max_size=20)
        state["listener"] = await asyncpg.connect(database_url)
        await state["listener"].add_listener(CHANNEL, hub.notified)
        state["upstream"] = aiohttp.ClientSession(
            base_url=upstream_url,
            timeout=aiohttp.ClientTimeout(total=10),
            connector=aiohttp.TCPConnector(limit=100),
        )
        fan_out = asyncio.create_task(hub.fan_out())
        try:
            yield
        finally:
            fan_out.cancel()
            await state["upstream"].close()
            await state["listener"].close()
            await state["pool"].close()

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def graphql_ws(socket: WebSocket) -> None:
        await socket.accept(subprotocol="graphql-transport-ws")
        watching: list[tuple[str, WebSocket]] = []
        try:
            while True:
                message = json.loads(await socket.receive_text())
                kind = message.get("type")
                if kind == "connection_init":
                    await socket.send_text('{"type":"connection_ack"}')
                elif kind == "ping":
                    await socket.send_text('{"type":"pong"}')
                elif kind == "subscribe":
                    project_id = str(message["payload"]["variables"]["id"])
                    operation = json.dumps(str(message["id"]))
                    hub.subscribers.setdefault(project_id, {})[socket] = operation
                    watching.append((project_id, socket))
        except WebSocketDisconnect:
            pass
        finally:
            for project_id, watcher in watching:
                targets = hub.subscribers.get(project_id)
                if targets is not None:
                    targets.pop(watcher, None)
                    if not targets:
                        del hub.subscribers[project_id]

    async def generate(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        try:
            claims = jwt.decode(header.removeprefix("Bearer "), jwt_secret, algorithms=["HS256"])
        except jwt.PyJWTError:
            return JSONResponse({"errors": [{"message": "unauthenticated"}]})
        user_id = str(claims["sub"])
        fields = (await request.json())["variables"]["input"]
        prompt = fields["prompt"].strip()
        quality = fields.get("quality", "HD")
        ratio = fields.get("aspectRatio", "LANDSCAPE_16_9")
        model = fields.get("imageModel", "comfyui/flux")
        seed = fields.get("seed")
        cost = PRICES[quality]
        fingerprint = hashlib.sha256(
            json.dumps(
                {
                    "prompt": prompt,
                    "quality": quality,
                    "aspect_ratio": ratio,
                    "image_model": model,
                    "seed": seed,
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()
        project_id = uuid.uuid4()
        pool = state["pool"]
        arguments = {
            "id": project_id,
            "user_id": user_id,
            "cost": cost,
            "prompt": prompt,
            "quality": quality,
            "aspect_ratio": ratio,
            "image_model": model,
            "seed": seed,
            "idempotency_key": None,
            "request_fingerprint": fingerprint,
        }
        pool = state["pool"]
        async with pool.acquire() as conn, conn.transaction():
            row = await Transaction(conn).fetchrow(TX1, arguments)
            if row["balance_before"] is None:  # first use: the account, then the charge
                await conn.execute(
                    "INSERT INTO accounts (user_id, balance) VALUES ($1, $2)",
                    user_id,
                    SIGNUP_CREDITS,
                )
                await conn.execute(
                    "INSERT INTO ledger (user_id, kind, amount, balance_after, reason) "
                    "VALUES ($1, 'GRANT', $2, $2, 'sign-up credits')",
                    user_id,
                    SIGNUP_CREDITS,
                )
                row = await Transaction(conn).fetchrow(TX1, arguments)
            if row["balance_after"] is None:
                raise RuntimeError("insufficient credits")
        async with state["upstream"].post(
            "/api/v1/project/video",
            json={
                "template_name": "story",
                "config": {
                    "prompt": prompt,
                    "aspect_ratio": UPSTREAM_RATIO[ratio],
                    "quality": UPSTREAM_QUALITY[quality],
                    "image_generation_config_name": model,
                    "auto_mode": True,
                    "entity_ids": [],
                },
                "metadata": {"storyline_project_id": str(project_id)},
            },
        ) as answer:
            external_id = str((await answer.json())["id"])
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "UPDATE projects SET external_id = $2, status = CASE WHEN status = 'PENDING' "
                "THEN 'PROCESSING' ELSE status END WHERE id = $1 RETURNING *",
                project_id,
                external_id,
            )
        return JSONResponse(
            {
                "data": {
                    "generateStory": {
                        "id": str(row["id"]),
                        "status": row["status"],
                        "creditsUsed": row["credits_used"],
                        "externalId": row["external_id"],
                        "version": row["version"],
                    }
                }
            }
        )

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/generate", generate, methods=["POST"]),
            WebSocketRoute("/graphql", graphql_ws),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--jwt-secret", required=True)
    parser.add_argument("--upstream-url", required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    app = create_app(args.database_url, args.jwt_secret, args.upstream_url)
    # The same settings as ``storyline serve`` (its defaults: no STORYLINE_* is read here).
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level=args.log_level,
        proxy_headers=False,
        **uvicorn_options(Settings.model_construct()),
    )


if __name__ == "__main__":
    main()
