"""The update stream of the portal: who hears what, live and on replay, and revocation."""

from __future__ import annotations

import httpx
import pytest

from refetch import StreamRejected

from ..conftest import wait_for
from .conftest import PortalHandle, SimulatorHandle, Stream

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

ALICE, BOB, CAROL = "alice@acme.test", "bob@acme.test", "carol@globex.test"


async def test_stream_needs_the_session(portal: PortalHandle) -> None:
    async with httpx.AsyncClient(base_url=portal.url) as http:
        r = await http.get("/api/updates")
        # The portal's own 401 (current_auth's), as on every route.
        assert r.status_code == 401 and r.json()["detail"].startswith("not signed in")
        assert r.headers["www-authenticate"] == "Bearer"
        r = await http.get("/api/updates", headers={"Authorization": "Bearer forged"})
        assert r.status_code == 401
        # The app's dependencies run first: a stranger learns nothing of the types.
        r = await http.get("/api/updates?types=nope", headers={"Authorization": "Bearer x"})
        assert r.status_code == 401
    bob = await portal.client(BOB)
    r = await bob.get("/api/updates?types=nope")
    assert r.status_code == 400 and "projects" in r.json()["known"]


async def test_the_cookie_opens_the_stream_too(portal: PortalHandle) -> None:
    bob = await portal.client(BOB, cookie=True)
    async with Stream(portal.url, bob, types=["projects"]) as stream:
        assert stream.frames[0].event == "hello"
        r = await bob.post("/api/projects", json={"name": "cookie"})
        await wait_for(lambda: stream.saw("projects", str(r.json()["id"])))


async def test_a_tenant_never_hears_of_another_tenants_changes_live(portal: PortalHandle) -> None:
    alice, bob, carol = [await portal.client(u) for u in (ALICE, BOB, CAROL)]
    types = ["projects", "compute"]
    async with (
        Stream(portal.url, bob, types=types) as b,
        Stream(portal.url, carol, types=types) as c,
    ):
        acme = (await alice.post("/api/projects", json={"name": "acme-only"})).json()["id"]
        r = await alice.post(
            f"/api/projects/{acme}/instances", json={"name": "vm", "flavor": "s1.small"}
        )
        vm = r.json()["id"]
        globex = (await carol.post("/api/projects", json={"name": "globex-only"})).json()["id"]
        await wait_for(lambda: b.saw("projects", str(acme)) and b.saw("compute", str(vm)))
        await wait_for(lambda: c.saw("projects", str(globex)))
        # carol's own update came after alice's: had alice's reached her, it would be here
        assert c.invalidated() == {("projects", str(globex))}
        assert ("projects", str(globex)) not in b.invalidated()


async def test_a_tenant_never_hears_of_another_tenants_changes_on_replay(
    portal: PortalHandle,
) -> None:
    alice, carol = await portal.client(ALICE), await portal.client(CAROL)
    async with Stream(portal.url, carol, types=["projects"]) as first:
        cursor = first.cursor
    acme = (await alice.post("/api/projects", json={"name": "while-away"})).json()["id"]
    globex = (await carol.post("/api/projects", json={"name": "mine"})).json()["id"]
    async with Stream(portal.url, carol, types=["projects"], last_event_id=cursor) as again:
        await wait_for(lambda: again.of("invalidate"))
        assert again.invalidated() == {("projects", str(globex))}
        assert not again.of("resync")
    assert ("projects", str(acme), frozenset({"tenant:acme"})) in portal.notes


async def test_removing_a_member_closes_the_door_within_a_second(portal: PortalHandle) -> None:
    alice, bob = await portal.client(ALICE), await portal.client(BOB)
    bob_id = (await bob.get("/api/me")).json()["id"]
    async with Stream(portal.url, bob) as stream:
        before = (await alice.post("/api/projects", json={"name": "seen"})).json()["id"]
        await wait_for(lambda: stream.saw("projects", str(before)))
        r = await alice.delete(f"/api/tenants/acme/members/{bob_id}")
        assert r.status_code == 204
        await wait_for(lambda: stream.saw("authentication", str(bob_id)), timeout=1.0)
        after = (await alice.post("/api/projects", json={"name": "unseen"})).json()["id"]
        portal.app.state.updates.notify("images")  # public: bob still hears this one
        await wait_for(lambda: stream.saw("images"))
        assert not stream.saw("projects", str(after))
    assert (await bob.get(f"/api/projects/{after}")).status_code == 404
    assert (await bob.get("/api/projects")).json() == []
    assert (await bob.get("/api/me")).json()["tenants"] == []


async def test_adding_a_member_opens_the_door_on_open_streams(portal: PortalHandle) -> None:
    alice, carol = await portal.client(ALICE), await portal.client(CAROL)
    async with Stream(portal.url, carol, types=["projects", "authentication"]) as stream:
        r = await alice.post("/api/tenants/acme/members", json={"email": CAROL, "role": "viewer"})
        assert r.status_code == 202
        [invitation] = (await carol.get("/api/invitations")).json()
        r = await carol.post(f"/api/invitations/{invitation['id']}/accept")
        assert r.status_code == 200
        carol_id = (await carol.get("/api/me")).json()["id"]
        await wait_for(lambda: stream.saw("authentication", str(carol_id)))
        pid = (await alice.post("/api/projects", json={"name": "shared"})).json()["id"]
        await wait_for(lambda: stream.saw("projects", str(pid)))


async def test_cluster_changes_reach_only_their_tenant(
    portal: PortalHandle, simulator: SimulatorHandle
) -> None:
    bob, carol = await portal.client(BOB), await portal.client(CAROL)
    async with (
        Stream(portal.url, bob, types=["gardener"]) as b,
        Stream(portal.url, carol, types=["gardener"]) as c,
    ):
        r = await simulator.http.put("/control/shoots/acme/acme-prod", json={"status": "unhealthy"})
        r.raise_for_status()
        await wait_for(lambda: b.saw("gardener"))
        clusters = (await bob.get("/api/clusters")).json()["clusters"]
        assert {"acme-prod": "unhealthy"}.items() <= {
            x["name"]: x["status"] for x in clusters
        }.items()
        r = await simulator.http.put(
            "/control/shoots/globex/globex-main", json={"status": "creating"}
        )
        await wait_for(lambda: c.saw("gardener"))
        assert len(b.of("invalidate")) == 1  # carol's change did not reach bob
        assert c.invalidated() == {("gardener", None)}
    assert ("gardener", None, frozenset({"tenant:acme"})) in portal.notes


async def test_signing_out_ends_the_sessions_open_streams(portal: PortalHandle) -> None:
    bob = await portal.client(BOB)
    stream = Stream(portal.url, bob, types=["projects"])
    async with stream:
        assert (await bob.post("/api/logout")).status_code == 204
        task = stream._task
        assert task is not None
        # The server ends the stream; the client's reconnect is refused: signed out.
        await wait_for(task.done)
        with pytest.raises(StreamRejected) as info:
            task.result()
        assert info.value.status_code == 401
    assert portal.app.state.updates.statistics().connections == 0
