"""The server under test: refetch's UpdatesEndpoint plus the bench routes.

    python bench/server_refetch.py --port 8000 [--token T] [--min-interval 0.1]
        [--backend redis://127.0.0.1:6379/0?stream=NAME]

``GET /updates`` the stream; ``POST /trigger?count=&rate=&deadline=`` notifies
``bench`` updates keyed by ``time.time_ns()``; ``GET /stats``; ``GET /data`` and
``POST /change`` for the polling comparison. uvicorn with uvloop and httptools. With ``--backend`` several of these processes
share one broker (``docs/scaling.md``): a trigger on one reaches the streams of all.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from _serving import (
    Counters,
    Scope,
    Send,
    arguments,
    bench_hub,
    paced,
    query,
    send_json,
    serve,
)


def build(args: Any) -> Any:
    service, endpoint = bench_hub(args)
    counters = Counters()

    def notify() -> None:
        service.notify("bench", key=str(time.time_ns()))

    async def app(scope: Scope, receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await service.start()
                    if args.gc_freeze:
                        gc.collect()
                        gc.freeze()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await service.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        if path == "/updates":
            if args.asgi_send:
                # What Starlette's middleware does to ``send``: the hub then writes
                # through the ASGI call instead of uvicorn's transport.
                async def wrapped(message: Any, send: Send = send) -> None:
                    await send(message)

                await endpoint(scope, receive, wrapped)
            else:
                await endpoint(scope, receive, send)
        elif path == "/data":
            counters.requests += 1
            await send_json(send, {"changed": counters.changed})
        elif path == "/stats":
            s = service.statistics()
            await send_json(
                send,
                counters_stats(counters, s.connections, frames=s.frames, deliveries=s.deliveries),
            )
        elif path == "/trigger":
            q = query(scope)
            count = int(q.get("count", 1))
            rate = float(q.get("rate", 0))
            deadline = float(q.get("deadline", 0))
            sent = await paced(notify, count - 1, rate, deadline) if count > 1 else 0
            last_ns = time.time_ns()
            cursor = await service.publish("bench", key=str(last_ns))
            await send_json(
                send,
                {"sent": sent + 1, "last_seq": int(cursor.rpartition(".")[2]), "last_ns": last_ns},
            )
        elif path == "/change":
            counters.changed = time.time_ns()
            service.notify("bench", key=str(counters.changed))
            await send_json(send, {"changed": counters.changed})
        else:
            await send_json(send, {"error": "not found"}, 404)

    return app


def counters_stats(counters: Counters, connections: int, **extra: Any) -> dict[str, Any]:
    from _serving import stats

    return stats(counters, connections, server="refetch", **extra)


if __name__ == "__main__":
    parser = arguments(__doc__ or "")
    parser.add_argument("--min-interval", type=float, default=0.1)
    # The GC policy is the library's (UpdateService(gc_freeze=True)); no app-level one.
    parser.set_defaults(gc_freeze=False)
    parser.add_argument(
        "--backend",
        default=None,
        help="UpdateService(backend=...), e.g. redis://127.0.0.1:6379/0?stream=NAME "
        "(default: one process, in memory)",
    )
    parser.add_argument(
        "--asgi-send", action="store_true", help="wrap send() as middleware would (no fast path)"
    )
    arguments_ = parser.parse_args()
    serve(build(arguments_), arguments_.port)
