"""What both servers under test share: the stats route, the paced trigger, uvicorn set-up."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import psutil
import uvicorn

from refetch import ANONYMOUS, Principal, UpdatesEndpoint, UpdateService

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class GCTimer:
    """Total and longest cyclic-GC pause of this process, via ``gc.callbacks``.

    Pauses of a millisecond or more are also kept with the time they ended
    (``time.monotonic()``, the clock of ``/stats``), so the load generator can tell the
    longest pause *during* its rounds from one while the clients connected.
    """

    NOTABLE = 0.001
    KEEP = 2000

    def __init__(self) -> None:
        self.total = 0.0
        self.longest = 0.0
        self.started = 0.0
        self.notable: deque[tuple[float, float, int]] = deque(maxlen=self.KEEP)
        gc.callbacks.append(self.callback)

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            pause = time.perf_counter() - self.started
            self.total += pause
            self.longest = max(self.longest, pause)
            if pause >= self.NOTABLE:
                self.notable.append((time.monotonic(), pause * 1000, info["generation"]))


class Counters:
    def __init__(self) -> None:
        self.requests = 0  # GET /data, the "API" a polling dashboard hits
        self.changed = time.time_ns()
        self.gc = GCTimer()
        self.process = psutil.Process()


def stats(counters: Counters, connections: int, **extra: Any) -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "time": time.monotonic(),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "rss": counters.process.memory_info().rss,
        "connections": connections,
        "requests": counters.requests,
        "gc_s": counters.gc.total,
        "gc_max_ms": counters.gc.longest * 1000,
        "gc_counts": gc.get_count(),
        "gc_frozen": gc.get_freeze_count(),
        "gc_pauses": list(counters.gc.notable),  # [end time, ms, generation], >= 1 ms
        "pid": os.getpid(),
        **extra,
    }


def query(scope: Scope) -> dict[str, str]:
    raw = parse_qs(scope.get("query_string", b"").decode())
    return {k: v[-1] for k, v in raw.items()}


async def paced(notify: Callable[[], None], count: int, rate: float, deadline: float) -> int:
    """Call ``notify`` ``count`` times at ``rate`` per second (0: at once), until ``deadline`` s."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while sent < count:
        elapsed = loop.time() - start
        due = count if rate <= 0 else min(count, int(elapsed * rate) + 1)
        while sent < due:
            notify()
            sent += 1
        if deadline and loop.time() - start >= deadline:
            break
        if sent < count:
            await asyncio.sleep(max(0.0, sent / rate - (loop.time() - start)))
    return sent


async def send_json(send: Send, body: object, status: int = 200) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def authorized(scope: Scope, token: str | None) -> bool:
    if token is None:
        return True
    expected = f"Bearer {token}".encode()
    return any(n == b"authorization" and v == expected for n, v in scope["headers"])


def bench_hub(args: Any) -> tuple[UpdateService, UpdatesEndpoint]:
    """The hub every bench server runs (types ``bench``, ``other``) and its endpoint,
    open to clients that send ``--token`` (every client without one)."""
    service = UpdateService(
        ["bench", "other"],
        min_interval=args.min_interval,
        heartbeat=args.heartbeat,
        backend=args.backend,
    )
    token = args.token

    def authenticate(scope: Scope) -> Principal | None:
        return ANONYMOUS if authorized(scope, token) else None

    return service, UpdatesEndpoint(service, authenticate=authenticate)


def arguments(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", default=None, help="require 'Authorization: Bearer <token>'")
    p.add_argument("--heartbeat", type=float, default=15.0)
    p.add_argument("--gc-freeze", action=argparse.BooleanOptionalAction, default=True)
    return p


def serve(app: Any, port: int) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    config = uvicorn.Config(
        app,
        host="127.0.0.1",  # loopback only: this is a load target
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
        backlog=4096,
    )
    uvicorn.Server(config).run()
