"""The endpoint as an app deploys it, for the multi-process stack tests: the service's
lifespan, middleware, and the hub in memory or on ``REFETCH_BACKEND``::

    gunicorn -k uvicorn.workers.UvicornWorker -w 2 tests.stack_app:app
    uvicorn --workers 2 tests.stack_app:app
    uvicorn tests.stack_app:compressed   # behind a GZip that compresses every type
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from refetch import UpdatesEndpoint, UpdateService
from refetch._types import ASGIApp, Message, Receive, Scope, Send

TYPES = ["projects", "compute"]

service = UpdateService(TYPES, backend=os.environ.get("REFETCH_BACKEND") or None, min_interval=0.02)


class WorkerHeader:
    """Names the worker process that answered, so a test can tell where a stream landed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.pid = str(os.getpid()).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"].append((b"x-worker-pid", self.pid))
            await send(message)

        await self.app(scope, receive, named)


async def notify(request: Request) -> JSONResponse:
    params = request.query_params
    return JSONResponse({"cursor": await service.publish(params["type"], params.get("key"))})


# Starlette rather than FastAPI (tests/test_stack.py runs FastAPI in process): every
# worker imports the app, and FastAPI's import alone takes a second on a busy machine.
app = Starlette(
    routes=[
        Route("/api/updates", UpdatesEndpoint(service)),
        Route("/notify", notify, methods=["POST"]),
        Route("/health", lambda request: JSONResponse({"cursor": service.cursor})),
    ],
    middleware=[Middleware(WorkerHeader)],
    lifespan=service.lifespan,
)


# Like Starlette before 0.46, which compressed text/event-stream too.
compressed = GZipMiddleware(app, minimum_size=0, exclude_content_types=())
