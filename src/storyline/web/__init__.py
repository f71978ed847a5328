"""The story editor page: static HTML and a little JavaScript, no build step."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

HERE = Path(__file__).parent

# For the editor's files and GraphiQL's (web/graphiql.py, which has its own policy).
NOSNIFF = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
# The page's favicon is the empty data: URL; everything else comes from this origin.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; connect-src 'self'"
)
# A Host header that is only a host name or address and a port: anything else (spaces,
# semicolons) could add directives to the policy.
PLAIN_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def content_security_policy(request: Request, policy: str = POLICY) -> str:
    """A page's policy (ending in its connect-src). Its WebSocket is same-origin: CSP 3
    counts ws(s) on this host as 'self', browsers that predate it need the origin spelled
    out."""
    host = request.headers.get("host", "")
    if not PLAIN_HOST.fullmatch(host):
        return policy
    return f"{policy} ws://{host} wss://{host}"


async def editor(request: Request) -> Response:
    headers = {**NOSNIFF, "Content-Security-Policy": content_security_policy(request)}
    return FileResponse(HERE / "static" / "editor.html", media_type="text/html", headers=headers)


class EditorFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(NOSNIFF)
        return response


routes = [
    Route("/", editor),
    Mount("/static", app=EditorFiles(directory=HERE / "static"), name="static"),
]
