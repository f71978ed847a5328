"""The story editor page: static HTML and a little JavaScript, no build step."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

HERE = Path(__file__).parent


async def editor(_: object) -> Response:
    return FileResponse(HERE / "static" / "editor.html", media_type="text/html")


routes = [
    Route("/", editor),
    Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
]
