"""One refetch instance, for the multi-process tests: ``REFETCH_BACKEND=<url> uvicorn tests.instance_app:app``."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from refetch import UpdatesEndpoint, UpdateService

from .conftest import TYPES

service = UpdateService(TYPES, backend=os.environ["REFETCH_BACKEND"], min_interval=0.02)


async def notify(request: Request) -> JSONResponse:
    cursor = await service.publish(request.query_params["type"], request.query_params.get("key"))
    return JSONResponse({"cursor": cursor})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"cursor": service.cursor})


app = Starlette(
    routes=[
        Route("/notify", notify, methods=["POST"]),
        Route("/health", health),
        Route("/updates", UpdatesEndpoint(service)),
    ],
    lifespan=service.lifespan,
)
