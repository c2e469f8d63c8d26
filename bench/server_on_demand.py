"""One instance for ``bench/on_demand.py``: a hub, its endpoint and one poller of the bench's
upstream, configured by the environment.

``BENCH_BACKEND`` (``memory://``, ``redis://...``, ...), ``BENCH_UPSTREAM`` (base URL),
``BENCH_INSTANCE`` (sent as ``X-Instance``), ``BENCH_ON_DEMAND`` (1/0), ``BENCH_LEASE`` (1/0),
``BENCH_POLLER`` (its name), ``BENCH_INTERVAL`` (seconds). ``GET /stats``: the poller's
statistics as JSON.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from refetch import BackgroundWorker, UpdatesEndpoint, UpdateService, poller
from refetch.leases import with_leases

BACKEND = os.environ.get("BENCH_BACKEND", "memory://")
NAME = os.environ.get("BENCH_POLLER", "progress")

service = UpdateService(["progress"], backend=BACKEND, min_interval=0.02)
pollers = [
    poller(
        "progress",
        name=NAME,
        url=f"{os.environ['BENCH_UPSTREAM']}/state",
        headers={"X-Instance": os.environ.get("BENCH_INSTANCE", "?")},
        interval=float(os.environ.get("BENCH_INTERVAL", "2.0")),
        timeout=1.0,
        max_backoff=2.0,
        on_demand=os.environ.get("BENCH_ON_DEMAND") == "1",
        idle_after=0.3,
    )
]
if os.environ.get("BENCH_LEASE") == "1":
    pollers = with_leases(pollers, BACKEND)
worker = BackgroundWorker(service, pollers)


async def stats(request: Request) -> JSONResponse:
    found = dataclasses.asdict(worker.statistics()[NAME])
    return JSONResponse({k: v for k, v in found.items() if not k.startswith("last")})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with service, worker:
        yield


app = Starlette(
    routes=[Route("/updates", UpdatesEndpoint(service)), Route("/stats", stats)],
    lifespan=lifespan,
)
