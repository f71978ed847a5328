"""Pins what storyline.compat.uvicorn relies on in uvicorn's protocols.

What the patched protocols do for clients is tested end to end over real sockets
(tests/test_server.py, tests/test_keepalive.py); here, the hooks they are built on.
A new uvicorn release is admitted (pyproject.toml's bound) once these pass against it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from storyline.compat.uvicorn import BoundedRequests, KeepalivePings


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


def test_the_http_protocol_has_every_hook_bounded_requests_overrides() -> None:
    overridden = {
        name
        for name, value in vars(BoundedRequests).items()
        if callable(value) and not name.startswith("__") and hasattr(HttpToolsProtocol, name)
    }
    assert overridden == {
        "connection_made",
        "connection_lost",
        "data_received",
        "on_headers_complete",
        "on_body",
        "on_message_complete",
        "on_response_complete",
        "handle_websocket_upgrade",
    }


async def test_the_parser_calls_back_as_a_request_arrives_and_is_answered() -> None:
    calls: list[object] = []

    class Recording(HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            calls.append(("head", self.url, list(self.headers), self.cycle))
            super().on_headers_complete()
            calls.append((self.cycle.response_started, self.cycle.response_complete))

        def on_body(self, body: bytes) -> None:
            calls.append(("body", body))
            super().on_body(body)

        def on_message_complete(self) -> None:
            calls.append("complete")
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            calls.append(("answered", self.cycle.response_complete))

    protocol = Recording(Config(app), ServerState(), {})
    transport = Transport()
    protocol.connection_made(transport)
    assert (protocol.transport, protocol.loop) == (transport, asyncio.get_running_loop())
    protocol.data_received(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
    for _ in range(20):
        if len(calls) == 5:
            break
        await asyncio.sleep(0.01)
    head = ("head", b"/x", [(b"host", b"a"), (b"content-length", b"2")], None)
    assert calls == [head, (False, False), ("body", b"hi"), "complete", ("answered", True)]
    assert transport.written.startswith(b"HTTP/1.1 204")
    protocol.connection_lost(None)


async def test_keepalive_pings_are_scheduled_in_ping_timer_and_stopped_with_it() -> None:
    delays: list[float] = []

    class Early(KeepalivePings):
        def first_ping_delay(self, interval: float) -> float:
            delays.append(interval)
            return interval / 4

    config = Config(app, ws_ping_interval=2.0, ws_ping_timeout=1.0)
    protocol = Early(config, ServerState(), {})
    assert isinstance(protocol, WebSocketsSansIOProtocol)
    assert (protocol.ping_interval, protocol.ping_timer) == (2.0, None)
    loop = asyncio.get_running_loop()
    protocol.start_keepalive()
    timer = protocol.ping_timer
    assert timer is not None
    assert timer.when() - loop.time() == pytest.approx(0.5, abs=0.1)
    assert delays == [2.0]
    assert callable(protocol.send_keepalive_ping)
    protocol.stop_keepalive()
    assert protocol.ping_timer is None
    assert timer.cancelled()


async def test_no_keepalive_without_an_interval() -> None:
    protocol = KeepalivePings(Config(app, ws_ping_interval=None), ServerState(), {})
    protocol.start_keepalive()
    assert protocol.ping_timer is None
