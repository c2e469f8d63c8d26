"""One instance with an on-demand poller, for the multi-instance tests of pollers on demand:
``REFETCH_BACKEND=<url> REFETCH_UPSTREAM=<base> REFETCH_INSTANCE=<name> uvicorn tests.demand_app:app``.

The poller GETs ``<upstream>/state`` with ``X-Instance: <name>`` (so the upstream counts who
polled); ``REFETCH_LEASE=1`` gives it a lease in the backend. ``/stats`` answers the worker's
statistics as JSON.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from refetch import BackgroundWorker, UpdatesEndpoint, UpdateService, poller
from refetch.leases import with_leases

from .conftest import TYPES

BACKEND = os.environ.get("REFETCH_BACKEND", "memory://")
INSTANCE = os.environ.get("REFETCH_INSTANCE", "?")
POLLER = os.environ.get("REFETCH_POLLER", "progress")

service = UpdateService(TYPES, backend=BACKEND, min_interval=0.02)
pollers = [
    poller(
        "progress",
        name=POLLER,
        url=f"{os.environ.get('REFETCH_UPSTREAM', 'http://127.0.0.1:1')}/state",
        headers={"X-Instance": INSTANCE},
        extract=lambda body: body["value"],
        interval=0.1,
        timeout=1.0,
        max_backoff=0.5,
        on_demand=True,
        idle_after=0.5,
    )
]
if os.environ.get("REFETCH_LEASE") == "1":
    pollers = with_leases(pollers, BACKEND)
worker = BackgroundWorker(service, pollers)


async def stats(request: Request) -> JSONResponse:
    found: dict[str, Any] = {
        name: {k: v for k, v in dataclasses.asdict(s).items() if not k.startswith("last")}
        for name, s in worker.statistics().items()
    }
    return JSONResponse(found)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"instance": INSTANCE})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with service, worker:
        yield


app = Starlette(
    routes=[
        Route("/updates", UpdatesEndpoint(service)),
        Route("/stats", stats),
        Route("/health", health),
    ],
    lifespan=lifespan,
)
