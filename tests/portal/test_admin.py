"""The portal's operator views: operators get the hub's metrics, tenant admins their tenants'
streams (alice is the tests' operator, see conftest)."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import wait_for
from .conftest import PortalHandle, Stream

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

ALICE, BOB, CAROL = "alice@acme.test", "bob@acme.test", "carol@globex.test"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_only_tenant_admins_get_the_operator_views(portal: PortalHandle) -> None:
    bob = await portal.client(BOB)
    async with httpx.AsyncClient(base_url=portal.url) as anonymous:
        for path, who in (("/api/admin/metrics", "operator"), ("/api/admin/connections", "admin")):
            assert (await anonymous.get(path)).status_code == 401
            r = await bob.get(path)
            assert r.status_code == 403 and who in r.json()["detail"]
    schema = (await bob.get("/openapi.json")).json()
    assert not any(path.startswith("/api/admin") for path in schema["paths"])


async def test_admins_see_their_tenants_streams_and_the_hubs_metrics(
    portal: PortalHandle,
) -> None:
    alice, bob, carol = [await portal.client(u) for u in (ALICE, BOB, CAROL)]
    async with (
        Stream(portal.url, alice, types=["projects"]),
        Stream(portal.url, bob, types=["projects", "compute"]) as b,
        Stream(portal.url, carol),
    ):
        before = samples((await alice.get("/api/admin/metrics")).text)
        created = (await alice.post("/api/projects", json={"name": "watched"})).json()["id"]
        await wait_for(lambda: b.saw("projects", str(created)))

        r = await alice.get("/api/admin/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        after = samples(r.text)
        listing = (await alice.get("/api/admin/connections")).json()["streams"]
        globex = (await carol.get("/api/admin/connections")).json()["streams"]

    assert after[("refetch_connections", ())] == 3
    assert after[("refetch_connections_by_type", (("type", "projects"),))] == 3
    assert after[("refetch_connections_by_type", (("type", "compute"),))] == 2
    projects = ("refetch_updates_total", (("type", "projects"),))
    assert after[projects] == before[projects] + 1
    assert after[("refetch_frames_total", ())] > before[("refetch_frames_total", ())]

    assert sorted((s["email"], s["tenants"], s["types"]) for s in listing) == [
        (ALICE, ["acme"], ["projects"]),
        (BOB, ["acme"], ["compute", "projects"]),
    ]
    bobs = next(s for s in listing if s["email"] == BOB)
    assert bobs["frames"] >= 1 and bobs["since"].endswith("+00:00")
    assert [s["email"] for s in globex] == [CAROL]
