"""The naive baseline: uvicorn + sse-starlette, one ``asyncio.Queue`` per client.

What most tutorials do: every update is put into every client's queue, and each
client's generator encodes and sends it. Same routes and frame shape as
``server_refetch.py``, so one load generator measures both.

    python bench/server_baseline.py --port 8001 [--token T]
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from _serving import Counters, arguments, authorized, paced, query, serve, stats
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def build(args: Any) -> Starlette:
    clients: set[asyncio.Queue[dict[str, str]]] = set()
    counters = Counters()
    seq = 0

    def notify(key: str | None = None) -> None:
        nonlocal seq
        seq += 1
        if key is None:
            key = str(time.time_ns())
        event = {
            "event": "invalidate",
            "id": f"b.{seq}",
            "data": json.dumps(
                {"updates": [{"type": "bench", "keys": [key]}]}, separators=(",", ":")
            ),
        }
        for queue in clients:
            queue.put_nowait(event)

    async def updates(request: Request) -> Response:
        if not authorized(request.scope, args.token):
            return JSONResponse({"error": "unauthorized"}, 401)
        queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        clients.add(queue)

        async def events() -> AsyncIterator[dict[str, str]]:
            try:
                yield {"event": "hello", "id": f"b.{seq}", "data": json.dumps({"cursor": seq})}
                while True:
                    yield await queue.get()
            finally:
                clients.discard(queue)

        return EventSourceResponse(events(), ping=int(args.heartbeat), sep="\n")

    async def trigger(request: Request) -> Response:
        q = query(request.scope)
        count = int(q.get("count", 1))
        sent = (
            await paced(notify, count - 1, float(q.get("rate", 0)), float(q.get("deadline", 0)))
            if count > 1
            else 0
        )
        last_ns = time.time_ns()
        notify(str(last_ns))
        return JSONResponse({"sent": sent + 1, "last_seq": seq, "last_ns": last_ns})

    async def data(request: Request) -> Response:
        counters.requests += 1
        return JSONResponse({"changed": counters.changed})

    async def change(request: Request) -> Response:
        counters.changed = time.time_ns()
        notify(str(counters.changed))
        return JSONResponse({"changed": counters.changed})

    async def get_stats(request: Request) -> Response:
        return JSONResponse(stats(counters, len(clients), server="baseline"))

    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        yield

    from contextlib import asynccontextmanager

    return Starlette(
        routes=[
            Route("/updates", updates),
            Route("/trigger", trigger, methods=["POST"]),
            Route("/data", data),
            Route("/change", change, methods=["POST"]),
            Route("/stats", get_stats),
        ],
        lifespan=asynccontextmanager(lifespan),
    )


if __name__ == "__main__":
    arguments_ = arguments(__doc__ or "").parse_args()
    serve(build(arguments_), arguments_.port)
