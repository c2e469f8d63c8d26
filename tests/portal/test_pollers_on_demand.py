"""The portal polls the simulator on demand (docs/portal.md, "Polling on demand"): nothing while
no page is open; a tenant's clusters while a member of that tenant has a stream open, at once
when it opens; progress and images while anyone signed in listens; and no more once the last
stream closed ``poll_idle_after`` ago. The real portal behind real uvicorn, the real simulator
counting its requests, real streams.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from portal.app import create_app
from portal.pollers import IMAGES, PROGRESS, gardener_poller_name

from ..conftest import serve, wait_for
from .conftest import SimulatorHandle, Stream, portal_settings

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

INTERVAL = 0.05  # every poller's, in portal_settings
IDLE_AFTER = 0.3
BOB = "bob@acme.test"  # member of acme
CAROL = "carol@globex.test"  # admin of globex


@dataclasses.dataclass
class OnDemand:
    url: str
    app: Any
    simulator: SimulatorHandle

    async def login(self, email: str) -> httpx.AsyncClient:
        http = httpx.AsyncClient(base_url=self.url, timeout=10)
        r = await http.post("/api/login", json={"email": email, "password": "demo"})
        assert r.status_code == 200, r.text
        http.cookies.clear()
        http.headers["Authorization"] = f"Bearer {r.json()['token']}"
        return http

    def requests(self) -> dict[str, int]:
        """The simulator's requests: per endpoint, and per tenant for /shoots."""
        state = self.simulator.state
        shoots = {f"shoots:{t}": n for t, n in state.shoots_by_tenant.items()}
        return {k: v for k, v in {**state.requests, **shoots}.items() if v}

    def why(self, name: str) -> str:
        return str(self.app.state.worker.statistics()[name].why)

    async def idle(self, *names: str) -> None:
        await wait_for(lambda: all(self.why(name) == "idle" for name in names), 5)


@pytest.fixture
async def on_demand(
    database: dict[str, Any], simulator: SimulatorHandle
) -> AsyncIterator[OnDemand]:
    settings = dataclasses.replace(
        portal_settings(database, simulator.url), poll_on_demand=True, poll_idle_after=IDLE_AFTER
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), serve(app) as url:
        yield OnDemand(url, app, simulator)


async def intervals(n: int) -> None:
    await asyncio.sleep(n * INTERVAL)


async def test_no_page_open_means_no_request_to_the_simulator_over_10_intervals(
    on_demand: OnDemand,
) -> None:
    await intervals(10)
    assert on_demand.requests() == {}
    # A signed-in API call is not a page with a stream: it gets the cache, says it is stale,
    # and costs the simulator nothing.
    bob = await on_demand.login(BOB)
    clusters = (await bob.get("/api/clusters")).json()
    assert clusters["stale"] is True
    await intervals(10)
    assert on_demand.requests() == {}
    stats = on_demand.app.state.worker.statistics()
    assert {stats[name].why for name in stats} == {"idle"}
    assert all(stats[name].polls_avoided >= 5 for name in stats)
    await bob.aclose()


async def test_a_member_opens_a_page_their_tenant_is_polled_at_once_and_stops_after_idle_after(
    on_demand: OnDemand,
) -> None:
    bob = await on_demand.login(BOB)
    acme, globex = gardener_poller_name("acme"), gardener_poller_name("globex")
    async with Stream(on_demand.url, bob, types=["gardener"]) as stream:
        # The first poll notifies (a first value), and the page hears it.
        await wait_for(lambda: ("gardener", None) in stream.invalidated(), 5)
        assert on_demand.requests().get("shoots:acme", 0) >= 1
        await wait_for(lambda: on_demand.requests().get("shoots:acme", 0) >= 4, 5)
        # Only acme's clusters: not globex's, and not what this page does not listen to.
        assert set(on_demand.requests()) == {"shoots", "shoots:acme"}
        assert (on_demand.why(acme), on_demand.why(globex)) == ("listeners", "idle")
        assert on_demand.why(PROGRESS) == on_demand.why(IMAGES) == "idle"
        clusters = (await bob.get("/api/clusters")).json()
        assert clusters["stale"] is False and clusters["clusters"]

    await on_demand.idle(acme)
    stopped = on_demand.requests()
    await intervals(10)
    assert on_demand.requests() == stopped
    await bob.aclose()


async def test_progress_and_images_follow_any_signed_in_page_clusters_only_its_tenant(
    on_demand: OnDemand,
) -> None:
    carol = await on_demand.login(CAROL)
    async with Stream(on_demand.url, carol) as stream:  # every type carol may see
        await wait_for(
            lambda: {"progress", "images", "gardener"} <= {t for t, _ in stream.invalidated()}, 5
        )
        await intervals(4)
        counts = on_demand.requests()
        assert counts["state"] >= 1 and counts["images"] >= 1 and counts["shoots:globex"] >= 1
        assert "shoots:acme" not in counts  # nobody of acme has a page open
    await on_demand.idle(PROGRESS, IMAGES, gardener_poller_name("globex"))
    await carol.aclose()
