"""The app users actually run: FastAPI with CORS and a raw ASGI middleware, the endpoint
mounted as the README shows, no GC policy of its own.

    python bench/server_fastapi.py --port 8000 [--token T] [--min-interval 0.1]
        [--backend redis://127.0.0.1:6379/0?stream=NAME]

The same routes as ``server_refetch.py`` (``GET /updates``, ``POST /trigger``,
``GET /stats``), as FastAPI routes. ``CORSMiddleware`` allows the load generator's
``Origin``, so every stream gets its CORS headers (a request without ``Origin`` would
pass CORS untouched); ``RequestId`` is the kind of plain ASGI middleware apps add (it
numbers requests and appends ``x-request-id`` to every response). Unlike the bare
server, this app calls no ``gc.freeze()``: whatever GC policy it has is the library's.
With ``--stack`` the app also has ``SessionMiddleware`` and ``GZipMiddleware`` (the stack of
issue 22: session, CORS, GZip, a request id). With ``--mount`` the stream is on ``refetch.mount``'s fast path, the way docs/server.md
recommends: its handshake through the whole stack, its frames straight to uvicorn.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from _serving import (
    Counters,
    Receive,
    Scope,
    Send,
    arguments,
    bench_hub,
    paced,
    serve,
    stats,
)
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from starlette.middleware.sessions import SessionMiddleware

import refetch

ORIGIN = "http://127.0.0.1:5173"


class RequestId:
    """Plain ASGI middleware: a request number in ``x-request-id`` on every response."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.numbers = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        number = str(next(self.numbers)).encode()

        async def numbered(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", number)]
            await send(message)

        await self.app(scope, receive, numbered)


def build(args: Any) -> Any:
    updates, endpoint = bench_hub(args)
    counters = Counters()
    app = FastAPI(lifespan=updates.lifespan)
    app.add_middleware(RequestId)
    if args.stack:
        app.add_middleware(GZipMiddleware, minimum_size=0)
        app.add_middleware(SessionMiddleware, secret_key="bench-secret")
    app.add_middleware(
        CORSMiddleware, allow_origins=[ORIGIN], allow_credentials=True, allow_methods=["*"]
    )
    if not args.mount:
        app.add_route("/updates", endpoint)  # type: ignore[arg-type]

    def notify() -> None:
        updates.notify("bench", key=str(time.time_ns()))

    @app.post("/trigger")
    async def trigger(count: int = 1, rate: float = 0, deadline: float = 0) -> dict[str, Any]:
        sent = await paced(notify, count - 1, rate, deadline) if count > 1 else 0
        last_ns = time.time_ns()
        cursor = await updates.publish("bench", key=str(last_ns))
        return {"sent": sent + 1, "last_seq": int(cursor.rpartition(".")[2]), "last_ns": last_ns}

    @app.get("/stats")
    async def get_stats(request: Request) -> JSONResponse:
        s = updates.statistics()
        return JSONResponse(
            stats(
                counters, s.connections, server="fastapi", frames=s.frames, deliveries=s.deliveries
            )
        )

    if args.mount:
        return refetch.mount(app, "/updates", endpoint)
    return app


if __name__ == "__main__":
    parser = arguments(__doc__ or "")
    parser.add_argument("--min-interval", type=float, default=0.1)
    parser.add_argument("--backend", default=None, help="UpdateService(backend=...)")
    parser.add_argument(
        "--mount", action="store_true", help="refetch.mount() the stream in front of the stack"
    )
    parser.add_argument(
        "--stack", action="store_true", help="add SessionMiddleware and GZipMiddleware"
    )
    parser.set_defaults(gc_freeze=False)
    arguments_ = parser.parse_args()
    serve(build(arguments_), arguments_.port)
