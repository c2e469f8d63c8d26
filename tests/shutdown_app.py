"""A minimal app behind ordinary middleware, for the shutdown tests: ``uvicorn tests.shutdown_app:app``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from refetch import UpdatesEndpoint, UpdateService

service = UpdateService(["projects"])


async def request_id(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    response.headers["x-request-id"] = "1"
    return response


app = Starlette(
    routes=[Route("/updates", UpdatesEndpoint(service))],
    middleware=[
        Middleware(CORSMiddleware, allow_origins=["*"]),
        Middleware(BaseHTTPMiddleware, dispatch=request_id),
    ],
    lifespan=service.lifespan,
)
