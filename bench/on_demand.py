"""Pollers on demand: how soon the first listener's poll reaches the upstream, and what
polling costs while nobody listens, against an always-on poller in the same invocation.

    .venv/bin/python bench/on_demand.py [--rounds 20] [--interval 2.0] [--idle 10]
                                        [--setups always,one,redis,postgres,nats] [--out DIR]

This process is the client and the upstream API (one clock for both): it opens a stream on
instance B (uvicorn processes running ``bench/server_on_demand.py``) and times, from sending
the stream's GET, the first upstream request of the polling instance. Setups:

- ``always`` (the baseline): one instance, a poller with ``on_demand=False``: the next poll
  comes whenever its interval says (on average half an interval);
- ``one``: one instance, no backend, ``on_demand=True``;
- ``redis`` / ``postgres``: two instances with a lease held by A, the stream on B: B's presence
  must reach A;
- ``nats``: two instances, no lease (NATS has none), the stream on B, A's first poll timed.

Before each on-demand round every instance's poller is idle again, so the poll timed is the first
listener's; ``polled`` counts the rounds whose poll came (within two intervals + 5 s). Then each
setup's idle cost: upstream requests over ``--idle`` seconds with no stream, and per hour.
Results: ``<out>/<timestamp>.md`` and ``.json`` (default ``bench/results/on-demand``).
(The portal's upstream requests per hour, always-on against on demand: ``bench/poll_demand.py``.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "on-demand"
SERVICES = {
    "redis": os.environ.get("REFETCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "postgres": os.environ.get(
        "REFETCH_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "nats": os.environ.get("REFETCH_TEST_NATS_URL", "nats://127.0.0.1:4222"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Upstream:
    def __init__(self) -> None:
        self.requests: list[tuple[float, str]] = []
        self.arrived = asyncio.Event()

    async def state(self, request: Request) -> JSONResponse:
        self.requests.append((time.monotonic(), request.headers.get("x-instance", "?")))
        self.arrived.set()
        return JSONResponse({"value": 1})

    async def first_after(self, t0: float, who: str, timeout: float) -> float:
        async with asyncio.timeout(timeout):
            while True:
                for at, by in self.requests:
                    if at >= t0 and by == who:
                        return at
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def upstream_server() -> AsyncIterator[tuple[Upstream, str]]:
    upstream = Upstream()
    port = free_port()
    config = uvicorn.Config(
        Starlette(routes=[Route("/state", upstream.state)]),
        host="127.0.0.1", port=port, log_level="warning", lifespan="off",
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield upstream, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class Instance:
    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "BENCH_INSTANCE": name}
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "uvicorn", "bench.server_on_demand:app",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
            cwd=ROOT, env=self.env,
        )  # fmt: skip
        async with httpx.AsyncClient() as http, asyncio.timeout(30):
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{self.url}/stats")).status_code == 200:
                        return
                await asyncio.sleep(0.05)

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            found: dict[str, Any] = (await http.get(f"{self.url}/stats")).json()
        return found

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


async def until(check: Any, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def quiet(instances: list[Instance]) -> bool:
    """No instance polls: on demand and nobody listening, or not holding the lease."""
    stats = [await i.stats() for i in instances]
    return all(found["why"] in ("idle", "lease") for found in stats)


async def setup_run(
    setup: str, upstream: Upstream, api: str, rounds: int, interval: float, idle: float
) -> dict[str, Any]:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    backend = "memory://"
    if setup in SERVICES:
        base = SERVICES[setup]
        backend = f"{base}{'&' if '?' in base else '?'}{'table' if setup == 'postgres' else 'stream'}={name}"
    env = {
        "BENCH_BACKEND": backend,
        "BENCH_UPSTREAM": api,
        "BENCH_POLLER": name,
        "BENCH_INTERVAL": str(interval),
        "BENCH_ON_DEMAND": "0" if setup == "always" else "1",
        "BENCH_LEASE": "1" if setup in ("redis", "postgres") else "0",
    }
    a = Instance("a", env)
    instances = [a]
    await a.start()
    if setup in ("redis", "postgres"):

        async def a_leads() -> bool:
            return bool((await a.stats())["leader"])

        await until(a_leads)
    b = a
    if setup in SERVICES:
        b = Instance("b", env)
        instances.append(b)
        await b.start()
    try:
        latencies: list[float] = []
        async with httpx.AsyncClient(timeout=None) as http:
            for _ in range(rounds):
                if setup != "always":
                    await until(lambda: quiet(instances))
                else:
                    await asyncio.sleep(random.uniform(0, interval))  # any phase of the cycle
                t0 = time.monotonic()  # the stream's request leaves
                async with http.stream("GET", f"{b.url}/updates") as response:
                    async for _chunk in response.aiter_bytes():
                        break  # the stream is open (retry + hello)
                    with contextlib.suppress(TimeoutError):
                        at = await upstream.first_after(t0, a.name, 2 * interval + 5)
                        latencies.append(at - t0)
        # idle cost: no stream for `idle` seconds
        if setup != "always":
            await until(lambda: quiet(instances))
        before = len(upstream.requests)
        await asyncio.sleep(idle)
        idle_requests = len(upstream.requests) - before
    finally:
        for instance in instances:
            await instance.stop()
    latencies.sort()
    ms = [x * 1000 for x in latencies] or [float("nan")]
    return {
        "setup": setup,
        "rounds": rounds,
        "polled": len(latencies),
        "median_ms": statistics.median(ms),
        "p90_ms": ms[int(0.9 * (len(ms) - 1))],
        "max_ms": ms[-1],
        "idle_requests": idle_requests,
        "idle_seconds": idle,
        "requests_per_hour_idle": idle_requests * 3600 / idle,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--setups", default="always,one,redis,postgres,nats")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = []
    async with upstream_server() as (upstream, api):
        for setup in args.setups.split(","):
            result = await setup_run(setup, upstream, api, args.rounds, args.interval, args.idle)
            results.append(result)
            print(json.dumps(result))
    baseline = next((r for r in results if r["setup"] == "always"), None)
    lines = [
        "# Pollers on demand: first-poll latency and idle cost",
        "",
        f"`.venv/bin/python bench/on_demand.py --rounds {args.rounds} --interval "
        f"{args.interval} --idle {args.idle} --setups {args.setups}`; poller interval "
        f"{args.interval} s.",
        "Latency: from the moment the client sends the stream's GET to instance B until the "
        "polling instance's request reaches the upstream (one clock, this process).",
        "",
        "| setup | polled / rounds | median ms | p90 ms | max ms | vs always (median) "
        "| upstream requests / h, nobody listening |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        ratio = "" if baseline is None else f"{r['median_ms'] / baseline['median_ms']:.3f}x"
        lines.append(
            f"| {r['setup']} | {r['polled']} / {r['rounds']} | {r['median_ms']:.1f} | "
            f"{r['p90_ms']:.1f} | {r['max_ms']:.1f} | {ratio} | {r['requests_per_hour_idle']:.0f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"{stamp}.md").write_text("\n".join(lines) + "\n")
    (args.out / f"{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
