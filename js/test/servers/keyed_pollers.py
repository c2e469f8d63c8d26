"""Keyed pollers on demand, for the watched-keys test of js/test/integration.test.ts: three
pollers of "compute", one per region, that poll only the regions some open stream watches
(``watch=compute:<region>``). The external API they poll is a route of this same server that
counts its requests per region; the server also says which stream URLs it was asked for.

PORT=8000 .venv/bin/python js/test/servers/keyed_pollers.py
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from refetch import BackgroundWorker, UpdatesEndpoint, UpdateService, poller

REGIONS = ("eu-1", "us-1", "ap-1")
PORT = int(os.environ.get("PORT", "8000"))
HOST = os.environ.get("HOST", "127.0.0.1")

updates = UpdateService(types=["compute", "progress"], min_interval=0.01)
pollers = [
    poller(
        "compute",
        key=region,
        url=f"http://{HOST}:{PORT}/upstream/{region}",
        interval=0.2,
        on_demand=True,
        idle_after=0.5,
    )
    for region in REGIONS
]
polled: Counter[str] = Counter()
stream_requests: list[dict[str, object]] = []
endpoint = UpdatesEndpoint(updates)


class Recorded:
    """The stream endpoint, noting each request's query string and Last-Event-ID first."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        stream_requests.append(
            {
                "query": scope["query_string"].decode("latin-1"),
                "lastEventId": headers.get(b"last-event-id", b"").decode("latin-1") or None,
            }
        )
        await endpoint(scope, receive, send)


async def upstream(request: Request) -> JSONResponse:
    region = request.path_params["region"]
    polled[region] += 1
    return JSONResponse({"region": region, "instances": 1})


async def seen(request: Request) -> JSONResponse:
    return JSONResponse({"polled": dict(polled), "streams": stream_requests})


async def progress(request: Request) -> JSONResponse:
    return JSONResponse({"value": 0})  # what test/python-server.ts polls until the server is up


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with updates, BackgroundWorker(updates, pollers):
        yield


app = Starlette(
    routes=[
        Route("/api/updates", Recorded()),
        Route("/upstream/{region}", upstream),
        Route("/api/seen", seen),
        Route("/api/progress", progress),
    ],
    lifespan=lifespan,
)

if __name__ == "__main__":
    uvicorn.run(app, host=HOST, port=PORT, log_level="warning")
