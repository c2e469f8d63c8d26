"""Progress, images and clusters come from the simulator through the BackgroundWorker: served
from the cache while the simulator fails, fresh again by themselves when it recovers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ..conftest import wait_for
from .conftest import PortalHandle, SimulatorHandle, Stream

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

BOB = "bob@acme.test"


async def fetch_all(bob: httpx.AsyncClient) -> dict[str, Any]:
    return {
        name: (await bob.get(f"/api/{name}")).json() for name in ("progress", "images", "clusters")
    }


async def eventually(check: Any, bob: httpx.AsyncClient, timeout: float = 5.0) -> dict[str, Any]:
    """Refetch until `check(bodies)` holds (pollers run on their own clock)."""
    latest: dict[str, Any] = {}

    async def poll() -> None:
        nonlocal latest
        while True:
            latest = await fetch_all(bob)
            if check(latest):
                return

    import asyncio

    try:
        async with asyncio.timeout(timeout):
            await poll()
    except TimeoutError:
        raise AssertionError(f"still not there: {latest}") from None
    return latest


@pytest.mark.parametrize(
    ("mode", "error"),
    [("fail", "HTTP 500"), ("garbage", "invalid JSON"), ("invalid", "extract failed")],
)
async def test_cached_data_is_served_while_the_simulator_fails_and_recovers(
    portal: PortalHandle, simulator: SimulatorHandle, mode: str, error: str
) -> None:
    bob = await portal.client(BOB)
    await simulator.http.put("/control/progress", json={"value": 42})
    fresh = await eventually(lambda b: b["progress"]["value"] == 42, bob)
    images, clusters = fresh["images"]["images"], fresh["clusters"]["clusters"]
    assert images and clusters

    async with Stream(portal.url, bob, types=["progress", "images", "gardener"]) as stream:
        await simulator.set_mode(mode)
        failing = await eventually(
            lambda b: all(b[n]["stale"] for n in ("progress", "images", "clusters")), bob
        )
        assert failing["progress"]["value"] == 42
        assert failing["progress"]["error"].startswith(error)
        assert failing["images"]["images"] == images
        assert failing["clusters"]["clusters"] == clusters
        # clients hear that their data went stale, so they can say so
        await wait_for(
            lambda: {t for t, _ in stream.invalidated()} == {"progress", "images", "gardener"}
        )

        await simulator.set_mode("ok")
        await simulator.http.put("/control/progress", json={"value": 43})
        recovered = await eventually(
            lambda b: (
                not any(b[n]["stale"] for n in ("progress", "images", "clusters"))
                and b["progress"]["value"] == 43
            ),
            bob,
        )
        assert recovered["progress"]["error"] is None


async def test_a_new_image_notifies_and_is_listed(
    portal: PortalHandle, simulator: SimulatorHandle
) -> None:
    bob = await portal.client(BOB)
    async with Stream(portal.url, bob, types=["images"]) as stream:
        r = await simulator.http.post(
            "/control/images", json={"id": "alpine-3.20", "name": "Alpine"}
        )
        r.raise_for_status()
        await wait_for(lambda: stream.saw("images"))
    ids = [i["id"] for i in (await bob.get("/api/images")).json()["images"]]
    assert "alpine-3.20" in ids


async def test_progress_moves_with_the_simulator(
    portal: PortalHandle, simulator: SimulatorHandle
) -> None:
    bob = await portal.client(BOB)
    async with Stream(portal.url, bob, types=["progress"]) as stream:
        await simulator.http.post("/control/step", json={"count": 7})
        await wait_for(lambda: stream.saw("progress"))
    assert (await bob.get("/api/progress")).json()["value"] == 7
