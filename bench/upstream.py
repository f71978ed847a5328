"""A zero-latency video service: answers at once, so generateStory's cost is Storyline's own.

Run: ``python -m bench.upstream --port P``.
"""

from __future__ import annotations

import argparse
import itertools

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_ids = itertools.count(1)


async def create(request: Request) -> Response:
    await request.body()
    return JSONResponse({"id": f"job-{next(_ids)}"})


async def read(request: Request) -> Response:
    return JSONResponse({"id": request.path_params["job"], "status": "processing"})


app = Starlette(
    routes=[
        Route("/api/v1/project/video", create, methods=["POST"]),
        Route("/api/v1/project/{job}", read),
        Route("/healthz", lambda request: JSONResponse({"ok": True})),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
