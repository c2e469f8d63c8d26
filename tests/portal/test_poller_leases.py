"""The portal on several instances: with a Redis backend one instance polls the simulator and
the other serves the snapshot it shares (real Redis, two portals, one simulator)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from portal.app import create_app
from portal.config import Settings
from portal.pollers import portal_pollers
from refetch.leases import PostgresLease, RedisLease

from ..conftest import serve, unique_name, wait_for
from .conftest import PortalHandle, SimulatorHandle, Stream, portal_settings

BOB = "bob@acme.test"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", RedisLease),
        ("postgresql://postgres@127.0.0.1/app?table=updates", PostgresLease),
        ("nats://127.0.0.1:4222", None),
        (None, None),
    ],
)
def test_pollers_get_leases_from_a_redis_or_postgres_backend(
    url: str | None, kind: type[Any] | None
) -> None:
    pollers = portal_pollers(Settings(backend_url=url), ["acme", "globex"])
    assert [p.name for p in pollers] == ["progress", "images", "gardener:acme", "gardener:globex"]
    if kind is None:  # one instance, or no lease store: every instance polls
        assert all(p.lease is None for p in pollers)
    else:
        assert all(isinstance(p.lease, kind) for p in pollers)


@contextlib.asynccontextmanager
async def portal_instance(settings: Settings) -> AsyncIterator[PortalHandle]:
    app = create_app(settings)
    async with app.router.lifespan_context(app), serve(app) as url:
        handle = PortalHandle(url, app)
        try:
            yield handle
        finally:
            await asyncio.gather(*(c.aclose() for c in handle.clients))


async def test_one_portal_polls_and_the_other_serves_its_values(
    simulator: SimulatorHandle, redis_url: str, tmp_path: Path
) -> None:
    stream = unique_name("portal_lease")
    settings = portal_settings(
        {"database_url": f"sqlite:///{tmp_path / 'portal.db'}"}, simulator.url
    )
    settings = replace(settings, backend_url=f"{redis_url}?stream={stream}")
    try:
        async with portal_instance(settings) as a:
            worker_a = a.app.state.worker
            await wait_for(
                lambda: all(s.leader for s in worker_a.statistics().values()), timeout=10
            )
            async with portal_instance(settings) as b:
                worker_b = b.app.state.worker
                await wait_for(
                    lambda: all(worker_b.latest(p.name).has_value for p in worker_b.pollers),
                    timeout=10,
                )
                stats = worker_b.statistics().values()
                assert all(s.leader is False and s.polls == 0 for s in stats)

                bob = await b.client(BOB)
                images = (await bob.get("/api/images")).json()
                assert images["images"] and not images["stale"]  # typed values on b too

                async with Stream(b.url, bob, types=["progress"]) as updates:
                    await simulator.http.post("/control/step", json={"count": 7})
                    # a notified through Redis; b's client hears it and gets a's new value
                    await wait_for(lambda: updates.saw("progress"), timeout=10)

                    async def fresh_progress() -> None:
                        while (await bob.get("/api/progress")).json()["value"] != 7:
                            await asyncio.sleep(0.01)

                    async with asyncio.timeout(10):
                        await fresh_progress()
                assert all(s.polls == 0 for s in worker_b.statistics().values())
    finally:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(match=f"{stream}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
