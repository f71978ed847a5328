"""A browser-like graphql-transport-ws client, small enough to run thousands per process.

It speaks RFC 6455 on a bare asyncio Protocol: what a browser sends (an Origin, an offer of
``permessage-deflate; client_max_window_bits``), masked client frames, inflation of
compressed server messages, answers to pings. A library client costs tens of
microseconds per message; on a 2-core machine shared with the server that would
measure the load generator rather than the server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import zlib
from collections.abc import Callable
from typing import Any

try:  # a faster parser when the environment has one
    import orjson

    loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover
    loads = json.loads

DEFLATE_TAIL = b"\x00\x00\xff\xff"
SUBPROTOCOL = "graphql-transport-ws"


def mask(payload: bytes, key: bytes) -> bytes:
    size = len(payload)
    repeated = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        size, "little"
    )


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One final, masked client frame (client messages are never compressed: RFC 7692 allows it)."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + mask(payload, key)


def stage_of(kind: str, message: dict[str, Any]) -> str | None:
    """The ``stage`` text of a ``next`` message, whichever server sent it."""
    data = (message.get("payload") or {}).get("data") or {}
    if kind == "postgraphile":
        # pg-pubsub's relatedNodeId is base64(JSON(__node__)); the bench's trigger puts the
        # whole event in __node__, so the update reaches the client without a query.
        listen = data.get("listen") or {}
        node_id = listen.get("relatedNodeId")
        if not node_id:
            return None
        node = loads(base64.b64decode(node_id))
        return node.get("stage") if isinstance(node, dict) else None
    # projectStatus's event, or accountChanges' when it is a ProjectStatusEvent (a
    # BalanceChange has no stage).
    event = data.get("projectStatus") or data.get("accountChanges") or {}
    stage = event.get("stage")
    return stage if isinstance(stage, str) else None


class Watcher(asyncio.Protocol):
    """One browser tab: one connection carrying the pool's subscriptions (operation ids
    "1", "2", ...; by default one projectStatus, or listen). ``ready`` resolves once each
    subscription started so far has answered (``subscribe`` starts more)."""

    def __init__(self, pool: Any, slot: int, project_id: str, init: dict[str, Any]) -> None:
        self.pool = pool
        self.init = init
        self.slot = slot
        self.project_id = project_id
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.inflater: Any = None
        self.fragments: list[bytes] = []
        self.fragment_compressed = False
        self.ready = asyncio.get_running_loop().create_future()
        self.closed = False
        self.compressed = False
        self.waiting: set[str] = set()  # operations whose first event has not come yet

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        host = f"127.0.0.1:{self.pool.port}"
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {self.pool.path} HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            f"Origin: http://{host}\r\n"
            "User-Agent: storyline-bench\r\n\r\n"
        )
        transport.write(request.encode())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {exc!r}"))
        self.pool.lost(self)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            self._upgrade(head)
            if not self.upgraded:
                return
        self._frames(now)

    # -- protocol ----------------------------------------------------------------------

    def _upgrade(self, head: str) -> None:
        lines = head.split("\r\n")
        if " 101 " not in lines[0] + " ":
            self._fail(f"handshake refused: {lines[0]}")
            return
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        extensions = headers.get("sec-websocket-extensions", "")
        if "permessage-deflate" in extensions:
            self.compressed = True
            self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self.upgraded = True
        self.send({"type": "connection_init", "payload": self.init})

    def send(self, message: dict[str, Any]) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(frame(json.dumps(message, separators=(",", ":")).encode()))

    def subscribe(self, operations: list[tuple[str, dict[str, Any]]]) -> asyncio.Future[None]:
        """Start these operations (id, subscribe payload); ``ready``, returned, resolves once
        each has answered (at once for a server that sends no first event)."""
        if self.ready.done():
            self.ready = asyncio.get_running_loop().create_future()
        for operation, payload in operations:
            self.send({"id": operation, "type": "subscribe", "payload": payload})
            if self.pool.initial_event:
                self.waiting.add(operation)
        if not self.waiting:
            self.ready.set_result(None)
        return self.ready

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(frame(b"\x03\xe8", opcode=0x8))
            self.transport.close()

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.close()

    def _frames(self, now: int) -> None:
        buffer = self.buffer
        size = len(buffer)
        position = 0
        while size - position >= 2:
            first = buffer[position]
            second = buffer[position + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 4], "big")
                head = 4
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 10], "big")
                head = 10
            if second & 0x80:
                head += 4  # servers never mask; tolerate it anyway
            if size - position < head + length:
                break
            payload = bytes(buffer[position + head : position + head + length])
            if second & 0x80:
                payload = mask(payload, bytes(buffer[position + head - 4 : position + head]))
            position += head + length
            opcode = first & 0x0F
            if opcode in (0x1, 0x2):
                self.fragments = [payload]
                self.fragment_compressed = bool(first & 0x40)
            elif opcode == 0x0:
                self.fragments.append(payload)
            elif opcode == 0x8:
                self.close()
                continue
            elif opcode == 0x9:
                if self.transport is not None and not self.closed:
                    self.transport.write(frame(payload, opcode=0xA))
                continue
            else:
                continue
            if first & 0x80:
                message = b"".join(self.fragments)
                self.fragments = []
                if self.fragment_compressed:
                    message = self.inflater.decompress(message + DEFLATE_TAIL)
                self._message(message, now)
        del buffer[:position]

    def _message(self, raw: bytes, now: int) -> None:
        message = loads(raw)
        kind = message.get("type")
        if kind == "next":
            if (message.get("payload") or {}).get("errors"):
                self.pool.failed(self, f"next with errors: {json.dumps(message)[:300]}")
                self._fail("subscription error")
                return
            operation = message.get("id")
            stage = stage_of(self.pool.kind, message)
            if stage is not None and stage.startswith("b"):
                seq_text, _, sent_text = stage[1:].partition(":")
                stream = int(operation) - 1 if isinstance(operation, str) else 0
                self.pool.delivered(self, stream, now, int(seq_text), int(sent_text))
            self.waiting.discard(operation)
            if not self.waiting and not self.ready.done():
                self.ready.set_result(None)
        elif kind == "connection_ack":
            self.subscribe(self.pool.operations(self.project_id))
        elif kind == "ping":
            self.send({"type": "pong"})
        elif kind in ("error", "complete", "connection_error"):
            self.pool.failed(self, f"{kind}: {json.dumps(message)[:300]}")
            self._fail(f"{kind} from server")
