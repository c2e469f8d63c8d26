"""End to end: two clients on the stream of a real portal (and a real simulator). One changes a
project; the other hears `invalidate` for exactly that project, refetches and sees the change."""

from __future__ import annotations

import pytest

from ..conftest import wait_for
from .conftest import PortalHandle, Stream

pytestmark = pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)


async def test_one_client_mutates_the_other_refetches_the_new_data(portal: PortalHandle) -> None:
    alice = await portal.client("alice@acme.test", cookie=True)  # a browser: cookie + CSRF
    bob = await portal.client("bob@acme.test")  # a script: bearer token
    project = (await alice.get("/api/projects")).json()[0]
    shown = await alice.get(f"/api/projects/{project['id']}")
    etag = shown.headers["etag"]

    async with Stream(portal.url, alice) as watcher, Stream(portal.url, bob) as actor:
        r = await bob.patch(f"/api/projects/{project['id']}", json={"name": "renamed-by-bob"})
        assert r.status_code == 200

        await wait_for(lambda: watcher.saw("projects", str(project["id"])))
        frame = next(f for f in watcher.of("invalidate") if f.updates[0].type == "projects")
        assert frame.data == {"updates": [{"type": "projects", "keys": [str(project["id"])]}]}
        assert frame.id  # a cursor to resume from

        fresh = await alice.get(f"/api/projects/{project['id']}", headers={"If-None-Match": etag})
        assert fresh.status_code == 200
        assert fresh.json()["name"] == "renamed-by-bob"
        unchanged = await alice.get(
            f"/api/projects/{project['id']}", headers={"If-None-Match": fresh.headers["etag"]}
        )
        assert unchanged.status_code == 304

        # and the other way round, through the cookie with its CSRF token
        created = await alice.post("/api/projects", json={"name": "from-alice"})
        assert created.status_code == 201
        await wait_for(lambda: actor.saw("projects", str(created.json()["id"])))
        names = [p["name"] for p in (await bob.get("/api/projects")).json()]
        assert "from-alice" in names
