"""The story editor page: static HTML and a little JavaScript, no build step.

Its GraphQL operations are one document, static/editor.graphql; ``/editor/document`` tells
the page how to name it in a request (by its text, or by its hash when the server runs
trusted documents only), as the app decides (``routes``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

HERE = Path(__file__).parent
EDITOR_DOCUMENT = HERE / "static" / "editor.graphql"

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


def editor_document() -> str:
    """The editor's document, exactly as its file holds it (its hash is of these bytes)."""
    return EDITOR_DOCUMENT.read_bytes().decode("utf-8")


def routes(editor_fields: Mapping[str, str]) -> list[BaseRoute]:
    """The page, its files, and ``/editor/document``: ``editor_fields``, the request fields
    that name the page's document (``{"query": …}`` or ``{"documentId": …}``)."""
    fields = dict(editor_fields)

    async def editor_request(request: Request) -> Response:
        return JSONResponse(fields, headers={**NOSNIFF, "Cache-Control": "no-cache"})

    return [
        Route("/", editor),
        Route("/editor/document", editor_request),
        Mount("/static", app=EditorFiles(directory=HERE / "static"), name="static"),
    ]
