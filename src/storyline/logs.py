"""Structured logs: JSON lines when not on a terminal, each carrying the request's ids.

The ids live in context variables: the request id is set by ``RequestIds`` for every HTTP
request and WebSocket connection, the operation by the GraphQL layer, the user once the
caller is authenticated, the project where a use case knows it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
user_id: ContextVar[str | None] = ContextVar("user_id", default=None)
project_id: ContextVar[str | None] = ContextVar("project_id", default=None)
operation: ContextVar[str | None] = ContextVar("operation", default=None)
FIELDS = {
    "request_id": request_id,
    "user_id": user_id,
    "project_id": project_id,
    "operation": operation,
}

_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_ids(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(f"{name}={value}" for name, value in _ids(record).items())
        line = super().format(record)
        return f"{line} [{ids}]" if ids else line


def _ids(record: logging.LogRecord) -> dict[str, str]:
    found = {}
    for name, variable in FIELDS.items():
        value = getattr(record, name, None) or variable.get()
        if value:
            found[name] = str(value)
    return found


def configure(level: str, output: Literal["auto", "json", "text"] = "auto") -> None:
    as_json = output == "json" or (output == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for chatty in ("pgserver", "alembic", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


def request_id_of(scope: Scope) -> str:
    """The client's ``X-Request-ID`` when it is sane, else a new one."""
    given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
    return given if _SAFE_ID.fullmatch(given) else uuid.uuid4().hex


class RequestIds:
    """Pure ASGI middleware: a request id for every request (the client's, if it is sane)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope)
        token = request_id.set(rid)
        if scope["type"] == "websocket":
            # No response headers to add, and every event goes out through send:
            # leave it unwrapped.
            try:
                await self.app(scope, receive, send)
            finally:
                request_id.reset(token)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
