"""One instance with one on-demand poller, for bench/poll_demand.py's first-listener latency:
``REFETCH_BACKEND=<url> REFETCH_UPSTREAM=<base> REFETCH_INSTANCE=<name> uvicorn bench.demand_server:app``.

The poller GETs ``<upstream>/state`` with ``X-Instance: <name>`` every second while someone
listens, and stops 0.2 s after the last listener left (it notices at its next tick: an idle
poller makes no request, so any request while it is idle comes from a first listener);
``REFETCH_LEASE=1`` gives it a lease in the backend; ``REFETCH_NO_POLLER=1`` leaves it out (an
instance that only serves streams). ``/stats`` answers its statistics as JSON.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from refetch import BackgroundWorker, UpdatesEndpoint, UpdateService, poller
from refetch.leases import with_leases

BACKEND = os.environ.get("REFETCH_BACKEND", "memory://")
INSTANCE = os.environ.get("REFETCH_INSTANCE", "?")
NAME = os.environ.get("REFETCH_POLLER", "progress")

service = UpdateService(["progress"], backend=BACKEND, min_interval=0.02, close_on_signals=False)
pollers = [
    poller(
        "progress",
        name=NAME,
        url=f"{os.environ.get('REFETCH_UPSTREAM', 'http://127.0.0.1:1')}/state",
        headers={"X-Instance": INSTANCE},
        extract=lambda body: body["value"],
        interval=1.0,
        timeout=2.0,
        on_demand=True,
        idle_after=0.2,
    )
]
if os.environ.get("REFETCH_LEASE") == "1":
    pollers = with_leases(pollers, BACKEND)
if os.environ.get("REFETCH_NO_POLLER") == "1":  # streams only: their demand must cross the backend
    pollers = []
worker = BackgroundWorker(service, pollers)


async def stats(request: Request) -> JSONResponse:
    s = worker.statistics().get(NAME)
    if s is None:
        return JSONResponse({"instance": INSTANCE, "why": "no poller", "polls": 0})
    return JSONResponse({"instance": INSTANCE, "why": s.why, "polls": s.polls})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with service, worker:
        yield


app = Starlette(
    routes=[Route("/updates", UpdatesEndpoint(service)), Route("/stats", stats)],
    lifespan=lifespan,
)
