"""On-demand pollers across instances: real uvicorn processes (``tests/demand_app.py``) on the
real Redis, PostgreSQL and NATS, one upstream API in this process counting who polls it.

Nothing waits a fixed time to see something happen; "nothing happens" is checked over ten
poll intervals, and the bounds on "promptly" are generous (the real latency is measured by
``bench/on_demand.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .conftest import SharedStream, Stream, require_service, serve, unique_name, wait_for
from .services import free_port

ROOT = Path(__file__).resolve().parent.parent
INTERVAL = 0.1  # the poller's, in tests/demand_app.py


class Upstream:
    def __init__(self) -> None:
        self.requests: list[str] = []

    async def state(self, request: Request) -> JSONResponse:
        self.requests.append(request.headers.get("x-instance", "?"))
        return JSONResponse({"value": 1})

    def count(self, who: str | None = None) -> int:
        return len(self.requests) if who is None else self.requests.count(who)


class Instance:
    def __init__(self, name: str, backend: str, upstream: str, *, lease: bool, poller: str) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "REFETCH_BACKEND": backend,
            "REFETCH_UPSTREAM": upstream,
            "REFETCH_INSTANCE": name,
            "REFETCH_LEASE": "1" if lease else "0",
            "REFETCH_POLLER": poller,
        }
        self.poller = poller
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> Instance:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "uvicorn", "tests.demand_app:app",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
            cwd=ROOT, env=self.env,
        )  # fmt: skip
        async with httpx.AsyncClient() as http, asyncio.timeout(20):
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"instance exited with {self.process.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{self.url}/health")).status_code == 200:
                        return self
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            answer: dict[str, Any] = (await http.get(f"{self.url}/stats")).json()[self.poller]
        return answer

    @property
    def updates(self) -> str:
        return f"{self.url}/updates?types=progress"


async def eventually(check: Any, timeout: float = 10.0) -> None:
    """Until the async predicate holds (asked every 50 ms), or fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def cluster(kind: str, *, lease: bool) -> AsyncIterator[tuple[Upstream, Any, Any]]:
    """An upstream API, and a factory of instances sharing one test-unique stream."""
    require_service(kind)
    shared = SharedStream(kind, unique_name("refetch_od"))
    upstream = Upstream()
    instances: list[Instance] = []
    poller = unique_name("progress")
    async with serve(Starlette(routes=[Route("/state", upstream.state)])) as api:

        async def start(name: str) -> Instance:
            instance = Instance(name, shared.url(), api, lease=lease, poller=poller)
            instances.append(instance)
            return await instance.start()

        try:
            yield upstream, start, shared
        finally:
            for instance in instances:
                await instance.stop()
            await shared.cleanup()
            await _drop_leases(kind, shared.name)


async def _drop_leases(kind: str, name: str) -> None:
    from .conftest import POSTGRES_DSN, REDIS_URL

    if kind == "redis":
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(match=f"{name}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    elif kind == "postgres":
        import asyncpg

        conn = await asyncpg.connect(POSTGRES_DSN)
        await conn.execute(f'DROP TABLE IF EXISTS "{name}_pollers"')
        await conn.close()


@pytest.mark.parametrize("kind", ["redis", "postgres"])
async def test_with_a_lease_a_stream_on_b_makes_exactly_one_instance_poll(kind: str) -> None:
    async with cluster(kind, lease=True) as (upstream, start, _shared):
        a = await start("a")

        async def a_leads() -> bool:
            return bool((await a.stats())["leader"])

        await eventually(a_leads)
        b = await start("b")
        await asyncio.sleep(10 * INTERVAL)
        assert upstream.count() == 0, upstream.requests

        # The stream is on B; A holds the lease: B's presence reaches A, A polls.
        async with Stream(b.updates) as stream:
            await wait_for(lambda: upstream.count("a") >= 1, 5)
            await wait_for(lambda: stream.saw("progress"), 5)
            await wait_for(lambda: upstream.count("a") >= 10, 10)
            assert upstream.count("b") == 0
            on_a, on_b = await a.stats(), await b.stats()
            assert (on_a["why"], on_a["instances"], on_a["listeners"]) == ("listeners", 1, 0)
            assert (on_b["why"], on_b["listeners"]) == ("lease", 1)

        async def a_idle() -> bool:
            return bool((await a.stats())["why"] == "idle")

        await eventually(a_idle)
        stopped = upstream.count()
        await asyncio.sleep(10 * INTERVAL)
        assert upstream.count() == stopped


async def test_without_a_lease_every_instance_polls_while_anyone_listens_nats() -> None:
    # NATS holds no lease: each instance polls, as long as a stream on any instance listens.
    async with cluster("nats", lease=False) as (upstream, start, _shared):
        a = await start("a")
        b = await start("b")
        await asyncio.sleep(10 * INTERVAL)
        assert upstream.count() == 0
        async with Stream(b.updates) as stream:
            await wait_for(lambda: upstream.count("a") >= 3 and upstream.count("b") >= 3, 5)
            await wait_for(lambda: stream.saw("progress"), 5)
            assert (await a.stats())["instances"] == 1

        async def both_idle() -> bool:
            return bool((await a.stats())["why"] == (await b.stats())["why"] == "idle")

        await eventually(both_idle)
        stopped = upstream.count()
        await asyncio.sleep(10 * INTERVAL)
        assert upstream.count() == stopped


@pytest.mark.parametrize("kind", ["redis", "postgres"])
async def test_kill_9_the_polling_instance_and_another_takes_over(kind: str) -> None:
    async with cluster(kind, lease=True) as (upstream, start, _shared):
        a = await start("a")

        async def a_leads() -> bool:
            return bool((await a.stats())["leader"])

        await eventually(a_leads)
        b = await start("b")
        async with Stream(b.updates):
            await wait_for(lambda: upstream.count("a") >= 3, 5)
            await a.kill()
            # The lease time is 3.5 s here (max_backoff 0.5 + 2 x timeout 1 + 1): B polls
            # well within 20 s, while its stream lives.
            await wait_for(lambda: upstream.count("b") >= 3, 20)
            stats = await b.stats()
            assert (stats["why"], stats["leader"]) == ("listeners", True)


async def test_the_presence_of_an_instance_killed_with_9_expires() -> None:
    # B holds the only stream and dies without a goodbye: A, the leader, keeps B's listeners
    # until B's announcement is 15 s old (the TTL), then goes idle.
    async with cluster("redis", lease=True) as (upstream, start, _shared):
        a = await start("a")

        async def a_leads() -> bool:
            return bool((await a.stats())["leader"])

        await eventually(a_leads)
        b = await start("b")
        stream = Stream(b.updates)
        await stream.__aenter__()
        try:
            await wait_for(lambda: upstream.count("a") >= 3, 5)
            await b.kill()
            killed = upstream.count("a")
            # No goodbye: A polls on for a while (a clean stop would end it at once)...
            await wait_for(lambda: upstream.count("a") >= killed + 20, 10)
            assert (await a.stats())["instances"] == 1

            async def a_idle() -> bool:
                return bool((await a.stats())["why"] == "idle")

            # ... until the TTL (15 s) and idle_after (0.5 s) have passed.
            await eventually(a_idle, 30)
            assert (await a.stats())["instances"] == 0
        finally:
            await stream.__aexit__(None, None, None)


async def test_presence_traffic_is_per_change_not_per_connect(redis_url: str) -> None:
    """1,000 connects and disconnects on the real Redis: a handful of presence messages."""
    import redis.asyncio

    from refetch import Principal, UpdateService

    from .conftest import TYPES, Recorder

    name = unique_name("refetch_od")
    client = redis.asyncio.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(f"{name}:demand")
    hub = UpdateService(TYPES, backend=f"{redis_url}?stream={name}", close_on_signals=False)
    try:
        async with hub:
            watch = hub.watch_demand("progress")

            async def heard() -> list[dict[str, Any]]:
                found = []
                while m := await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5):
                    if m["type"] == "message":
                        found.append(json.loads(m["data"]))
                return found

            async with asyncio.timeout(5):  # the hub listens: it asked the others to announce
                while not any(m.get("q") for m in await heard()):
                    pass
            types = frozenset({"progress"})
            base = hub.attach(Recorder(), Principal(), types, None)
            await wait_for(lambda: watch.wanted, 5)
            loop = asyncio.get_running_loop()
            started = loop.time()
            # 1,000 streams come and go while the poller is already wanted: nothing to say.
            for _ in range(1000):
                hub.detach(hub.attach(Recorder(), Principal(), types, None))
                await asyncio.sleep(0)
            # ... and the only stream flaps 1,000 times: coalesced, one message per 0.1 s at most.
            hub.detach(base)
            for _ in range(1000):
                hub.detach(hub.attach(Recorder(), Principal(), types, None))
                await asyncio.sleep(0)
            elapsed = loop.time() - started
            sets = [m["a"] for m in await heard()]
            # the gain, the final loss, and at most one per 0.1 s in between
            assert sets[0] and not sets[-1], sets
            assert 2 <= len(sets) <= 2 + elapsed / 0.1, (sets, elapsed)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.delete(name, f"{name}:epoch")
        await client.aclose()
