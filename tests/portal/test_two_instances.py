"""Two portal instances on one Redis stream and one database: member removal, role changes and
sign-out made through one instance take effect on the other's streams (what the clients get)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from refetch import StreamRejected

from ..conftest import unique_name, wait_for
from .conftest import PortalHandle, SimulatorHandle, Stream, portal_settings
from .test_poller_leases import portal_instance

ALICE, BOB = "alice@acme.test", "bob@acme.test"


@pytest.fixture
async def two(
    simulator: SimulatorHandle, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[PortalHandle, PortalHandle]]:
    stream = unique_name("portal_two")
    settings = portal_settings(
        {"database_url": f"sqlite:///{tmp_path / 'portal.db'}"}, simulator.url
    )
    settings = replace(settings, backend_url=f"{redis_url}?stream={stream}")
    try:
        async with portal_instance(settings) as a, portal_instance(settings) as b:
            yield a, b
    finally:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(match=f"{stream}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_a_member_removed_through_one_instance_hears_nothing_more_on_the_other(
    two: tuple[PortalHandle, PortalHandle],
) -> None:
    a, b = two
    alice_a, bob_b = await a.client(ALICE), await b.client(BOB)
    bob_id = (await bob_b.get("/api/me")).json()["id"]
    async with Stream(b.url, bob_b) as stream:
        seen = (await alice_a.post("/api/projects", json={"name": "seen"})).json()["id"]
        await wait_for(lambda: stream.saw("projects", str(seen)), 10)

        assert (await alice_a.delete(f"/api/tenants/acme/members/{bob_id}")).status_code == 204
        alice_b = await b.client(ALICE)
        unseen = [
            (await http.post("/api/projects", json={"name": f"unseen-{i}"})).json()["id"]
            for i, http in enumerate((alice_a, alice_b))
        ]
        # Later in the stream than both projects: once bob has it, they were filtered.
        await b.app.state.updates.publish("images")
        await wait_for(lambda: stream.saw("images"), 10)
        for pid in unseen:
            assert not stream.saw("projects", str(pid))
        assert stream.saw("authentication", str(bob_id))  # told that his access changed
    assert (await bob_b.get("/api/projects")).json() == []


async def test_signing_out_through_one_instance_ends_the_sessions_streams_on_the_other(
    two: tuple[PortalHandle, PortalHandle],
) -> None:
    a, b = two
    bob_a = await a.client(BOB)
    bob_b = await b.client()
    bob_b.headers["authorization"] = bob_a.headers["authorization"]  # the same session
    stream = Stream(b.url, bob_b, types=["projects"])
    async with stream:
        assert (await bob_a.post("/api/logout")).status_code == 204
        # B ends the stream; the reconnect is refused there: the session is gone.
        await wait_for(lambda: stream.ended, 10)
        with pytest.raises(StreamRejected) as info:
            assert stream._task is not None
            stream._task.result()
        assert info.value.status_code == 401


async def test_signing_out_everywhere_through_one_instance_ends_every_stream_on_the_other(
    two: tuple[PortalHandle, PortalHandle],
) -> None:
    a, b = two
    laptop, phone = await a.client(BOB), await b.client(BOB)
    on_phone = Stream(b.url, phone, types=["projects"])
    async with on_phone:
        assert (await laptop.delete("/api/sessions")).status_code == 204
        await wait_for(lambda: on_phone.ended, 10)
        with pytest.raises(StreamRejected) as info:
            assert on_phone._task is not None
            on_phone._task.result()
        assert info.value.status_code == 401
    assert (await phone.get("/api/me")).status_code == 401
