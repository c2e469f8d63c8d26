"""The REST API on SQLite and on the real PostgreSQL: auth, CSRF, CRUD, errors, ETags."""

from __future__ import annotations

import asyncio

import pytest

from ..conftest import wait_for
from .conftest import PortalHandle

ALICE, BOB, CAROL = "alice@acme.test", "bob@acme.test", "carol@globex.test"


async def test_login_sets_a_signed_httponly_cookie_and_returns_a_token(
    portal: PortalHandle,
) -> None:
    http = await portal.client()
    r = await http.post("/api/login", json={"email": ALICE, "password": "demo"})
    assert r.status_code == 200
    body = r.json()
    assert body["token"] and body["csrf_token"]
    assert body["user"]["email"] == ALICE
    assert body["user"]["tenants"] == [{"slug": "acme", "name": "Acme Corp", "role": "admin"}]
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert (
        body["token"] not in r.headers["set-cookie"].split(";")[0].split("=", 1)[1].split(".")[1:]
    )
    me = await http.get("/api/me")  # the cookie alone
    assert me.status_code == 200 and me.json()["email"] == ALICE


@pytest.mark.parametrize(
    "credentials",
    [{"email": ALICE, "password": "wrong"}, {"email": "nobody@acme.test", "password": "demo"}],
)
async def test_wrong_credentials_are_401(portal: PortalHandle, credentials: dict[str, str]) -> None:
    http = await portal.client()
    r = await http.post("/api/login", json=credentials)
    assert r.status_code == 401
    assert "set-cookie" not in r.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/me"),
        ("GET", "/api/projects"),
        ("POST", "/api/projects"),
        ("GET", "/api/projects/1"),
        ("DELETE", "/api/projects/1"),
        ("GET", "/api/instances"),
        ("GET", "/api/flavors"),
        ("GET", "/api/images"),
        ("GET", "/api/progress"),
        ("GET", "/api/clusters"),
        ("GET", "/api/tenants/acme/members"),
        ("GET", "/api/updates"),
    ],
)
async def test_no_credentials_is_401(portal: PortalHandle, method: str, path: str) -> None:
    http = await portal.client()
    r = await http.request(method, path, json={"name": "x"} if method == "POST" else None)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json"


async def test_forged_cookie_and_unknown_token_are_401(portal: PortalHandle) -> None:
    http = await portal.client()
    http.cookies.set("portal_session", "abc.def")
    r = await http.get("/api/me")
    assert r.status_code == 401
    http.cookies.clear()
    r = await http.get("/api/me", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


async def test_logout_ends_the_session(portal: PortalHandle) -> None:
    bob = await portal.client(BOB)
    assert (await bob.post("/api/logout")).status_code == 204
    assert (await bob.get("/api/me")).status_code == 401


async def test_project_lifecycle(portal: PortalHandle) -> None:
    bob = await portal.client(BOB)
    r = await bob.post("/api/projects", json={"name": "  analytics "})
    assert r.status_code == 201
    project = r.json()
    assert project["name"] == "analytics" and project["tenant"] == "acme"
    pid = project["id"]
    assert (await bob.get(f"/api/projects/{pid}")).json() == project
    assert pid in [p["id"] for p in (await bob.get("/api/projects")).json()]
    r = await bob.patch(f"/api/projects/{pid}", json={"name": "insights"})
    assert r.status_code == 200 and r.json()["name"] == "insights"
    assert (await bob.delete(f"/api/projects/{pid}")).status_code == 204
    assert (await bob.get(f"/api/projects/{pid}")).status_code == 404
    assert [n for n in portal.notified("projects")] == [
        ("projects", str(pid), frozenset({"tenant:acme"}))
    ] * 3


async def test_cookie_mutations_need_the_csrf_header(portal: PortalHandle) -> None:
    alice = await portal.client(ALICE, cookie=True)
    token = alice.headers.pop("X-CSRF-Token")
    before = (await alice.get("/api/projects")).json()
    r = await alice.post("/api/projects", json={"name": "csrf"})
    assert r.status_code == 403
    r = await alice.post("/api/projects", json={"name": "csrf"}, headers={"X-CSRF-Token": "x"})
    assert r.status_code == 403
    assert (await alice.get("/api/projects")).json() == before
    assert portal.notified("projects") == []
    r = await alice.post("/api/projects", json={"name": "csrf"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 201


async def test_other_tenants_objects_are_404(portal: PortalHandle) -> None:
    alice, carol = await portal.client(ALICE), await portal.client(CAROL)
    pid = (await alice.post("/api/projects", json={"name": "secret"})).json()["id"]
    r = await alice.post(
        f"/api/projects/{pid}/instances", json={"name": "vm", "flavor": "s1.small"}
    )
    iid = r.json()["id"]
    assert all(p["tenant"] == "globex" for p in (await carol.get("/api/projects")).json())
    assert all(i["tenant"] == "globex" for i in (await carol.get("/api/instances")).json())
    for method, path, body in [
        ("GET", f"/api/projects/{pid}", None),
        ("PATCH", f"/api/projects/{pid}", {"name": "mine"}),
        ("DELETE", f"/api/projects/{pid}", None),
        ("GET", f"/api/projects/{pid}/instances", None),
        ("POST", f"/api/projects/{pid}/instances", {"name": "vm2", "flavor": "s1.small"}),
        ("GET", f"/api/instances/{iid}", None),
        ("POST", f"/api/instances/{iid}/stop", None),
        ("DELETE", f"/api/instances/{iid}", None),
        ("GET", "/api/projects?tenant=acme", None),
        ("GET", "/api/clusters?tenant=acme", None),
        ("GET", "/api/tenants/acme/members", None),
        ("POST", "/api/projects", {"name": "x", "tenant": "acme"}),
    ]:
        r = await carol.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
    assert (await alice.get(f"/api/projects/{pid}")).json()["name"] == "secret"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": 42}, "name"),
        ({"name": "nul\x00byte"}, "name"),
        ({"name": "ok", "tenant": "Not A Slug"}, "tenant"),
        ({"name": "ok", "owner": "me"}, "owner"),
    ],
)
async def test_invalid_project_bodies_are_422_with_field_errors(
    portal: PortalHandle, body: dict[str, object], field: str
) -> None:
    bob = await portal.client(BOB)
    before = (await bob.get("/api/projects")).json()
    r = await bob.post("/api/projects", json=body)
    assert r.status_code == 422
    assert field in {e["loc"][-1] for e in r.json()["detail"]}
    assert (await bob.get("/api/projects")).json() == before
    assert portal.notified("projects") == []


async def test_malformed_json_is_422(portal: PortalHandle) -> None:
    bob = await portal.client(BOB)
    r = await bob.post(
        "/api/projects", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "vm", "flavor": "huge"}, "flavor"),
        ({"name": "Bad_Name", "flavor": "s1.small"}, "name"),
    ],
)
async def test_invalid_instance_bodies_are_422(
    portal: PortalHandle, body: dict[str, object], field: str
) -> None:
    bob = await portal.client(BOB)
    r = await bob.post("/api/projects/1/instances", json=body)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == field
    assert (await bob.get("/api/projects/1/instances")).json() == []
    assert portal.notified("compute") == []


async def test_an_image_not_in_the_catalog_is_409(portal: PortalHandle) -> None:
    # Well formed (the schema cannot list a catalog that changes): a conflict with it.
    bob = await portal.client(BOB)
    body = {"name": "vm", "flavor": "s1.small", "image": "no-such-image"}
    r = await bob.post("/api/projects/1/instances", json=body)
    assert r.status_code == 409
    assert r.json() == {
        "detail": "image 'no-such-image' is not in the catalog; see GET /api/images"
    }
    assert (await bob.get("/api/projects/1/instances")).json() == []


@pytest.mark.parametrize("pid", ["999999", str(2**40), "0", "-1"])
async def test_unknown_ids_are_404(portal: PortalHandle, pid: str) -> None:
    bob = await portal.client(BOB)
    assert (await bob.get(f"/api/projects/{pid}")).status_code == 404
    assert (await bob.patch(f"/api/projects/{pid}", json={"name": "n"})).status_code == 404
    assert (await bob.get(f"/api/instances/{pid}")).status_code == 404
    assert (await bob.delete(f"/api/tenants/acme/members/{pid}")).status_code in (403, 404)


async def test_non_numeric_id_is_422(portal: PortalHandle) -> None:
    bob = await portal.client(BOB)
    assert (await bob.get("/api/projects/abc")).status_code == 422


async def test_duplicate_name_is_409_and_changes_nothing(portal: PortalHandle) -> None:
    bob = await portal.client(BOB)
    before = (await bob.get("/api/projects")).json()
    r = await bob.post("/api/projects", json={"name": "website"})
    assert r.status_code == 409
    r = await bob.patch(f"/api/projects/{before[1]['id']}", json={"name": "website"})
    assert r.status_code == 409
    assert (await bob.get("/api/projects")).json() == before
    assert portal.notified("projects") == []


async def test_viewers_read_but_do_not_write(portal: PortalHandle) -> None:
    alice, bob = await portal.client(ALICE), await portal.client(BOB)
    bob_id = (await bob.get("/api/me")).json()["id"]
    r = await alice.patch(f"/api/tenants/acme/members/{bob_id}", json={"role": "viewer"})
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert (await bob.get("/api/projects")).status_code == 200
    assert (await bob.post("/api/projects", json={"name": "nope"})).status_code == 403
    assert (await bob.delete("/api/projects/1")).status_code == 403
    assert (await bob.get("/api/projects/1")).status_code == 200


async def test_members_only_admins_manage_and_the_last_admin_stays(portal: PortalHandle) -> None:
    alice, bob = await portal.client(ALICE), await portal.client(BOB)
    alice_id = (await alice.get("/api/me")).json()["id"]
    members = (await bob.get("/api/tenants/acme/members")).json()
    assert [(m["email"], m["role"]) for m in members] == [(ALICE, "admin"), (BOB, "member")]
    r = await bob.patch(f"/api/tenants/acme/members/{alice_id}", json={"role": "viewer"})
    assert r.status_code == 403
    r = await alice.patch(f"/api/tenants/acme/members/{alice_id}", json={"role": "member"})
    assert r.status_code == 409
    assert (await alice.delete(f"/api/tenants/acme/members/{alice_id}")).status_code == 409
    r = await alice.patch(f"/api/tenants/acme/members/{alice_id}", json={"role": "owner"})
    assert r.status_code == 422
    r = await alice.post("/api/tenants/acme/members", json={"email": CAROL, "role": "viewer"})
    assert r.status_code == 202
    carol = await portal.client(CAROL)
    [invitation] = (await carol.get("/api/invitations")).json()
    assert (await carol.post(f"/api/invitations/{invitation['id']}/accept")).status_code == 200
    r = await alice.post("/api/tenants/acme/members", json={"email": CAROL})
    assert r.status_code == 409
    # in the order she joined: her own tenant stays her default
    assert [t["slug"] for t in (await carol.get("/api/me")).json()["tenants"]] == ["globex", "acme"]


async def test_gets_send_an_etag_and_answer_304_when_unchanged(portal: PortalHandle) -> None:
    bob = await portal.client(BOB)
    r = await bob.get("/api/projects")
    etag = r.headers["etag"]
    again = await bob.get("/api/projects", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    await bob.post("/api/projects", json={"name": "fresh"})
    changed = await bob.get("/api/projects", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert "fresh" in [p["name"] for p in changed.json()]


async def test_api_responses_carry_the_refetch_cursor_their_data_was_read_at(
    portal: PortalHandle,
) -> None:
    bob = await portal.client(BOB)
    r = await bob.get("/api/projects")
    read_at = r.headers["refetch-cursor"]
    again = await bob.get("/api/projects", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.headers["refetch-cursor"]
    await bob.post("/api/projects", json={"name": "stamped"})
    updates = portal.app.state.updates
    await wait_for(lambda: updates.cursor != read_at)
    after = await bob.get("/api/projects")
    assert after.headers["refetch-cursor"] == updates.cursor != read_at


async def test_compute_lifecycle_notifies_once_per_committed_step(portal: PortalHandle) -> None:
    bob = await portal.client(BOB)

    async def status(iid: int) -> str | None:
        r = await bob.get(f"/api/instances/{iid}")
        return None if r.status_code == 404 else r.json()["status"]

    async def settles(iid: int, expected: str | None) -> None:
        async with asyncio.timeout(5):
            while await status(iid) != expected:
                await asyncio.sleep(0.01)

    r = await bob.post(
        "/api/projects/1/instances",
        json={"name": "vm-1", "flavor": "s1.small", "image": "debian-12"},
    )
    assert r.status_code == 201 and r.json()["status"] == "provisioning"
    iid = r.json()["id"]
    await settles(iid, "running")
    assert (await bob.post(f"/api/instances/{iid}/start")).status_code == 409
    r = await bob.post(f"/api/instances/{iid}/stop")
    assert r.status_code == 202 and r.json()["status"] == "stopping"
    await settles(iid, "stopped")
    assert (await bob.post(f"/api/instances/{iid}/start")).json()["status"] == "starting"
    await settles(iid, "running")
    assert (await bob.delete(f"/api/instances/{iid}")).json()["status"] == "deleting"
    await settles(iid, None)
    # create, running, stop, stopped, start, running, delete, deleted
    assert portal.notified("compute") == [("compute", str(iid), frozenset({"tenant:acme"}))] * 8


async def test_deleting_a_project_deletes_its_instances(portal: PortalHandle) -> None:
    bob = await portal.client(BOB)
    pid = (await bob.post("/api/projects", json={"name": "doomed"})).json()["id"]
    iid = (
        await bob.post(f"/api/projects/{pid}/instances", json={"name": "vm", "flavor": "s1.small"})
    ).json()["id"]
    assert (await bob.delete(f"/api/projects/{pid}")).status_code == 204
    assert (await bob.get(f"/api/instances/{iid}")).status_code == 404
    assert ("compute", str(iid), frozenset({"tenant:acme"})) in portal.notified("compute")


async def test_flavors_images_progress_and_clusters(portal: PortalHandle) -> None:
    bob = await portal.client(BOB)
    assert "s1.small" in [f["name"] for f in (await bob.get("/api/flavors")).json()]
    images = (await bob.get("/api/images")).json()
    assert "debian-12" in [i["id"] for i in images["images"]] and images["stale"] is False
    progress = (await bob.get("/api/progress")).json()
    assert progress["value"] == 0 and progress["stale"] is False and progress["fetched_at"]
    clusters = (await bob.get("/api/clusters")).json()
    assert {c["tenant"] for c in clusters["clusters"]} == {"acme"}
    assert {c["name"] for c in clusters["clusters"]} == {"acme-prod", "acme-dev"}


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_wrong_method_is_answered_with_every_method_of_the_path(
    portal: PortalHandle,
) -> None:
    alice = await portal.client(ALICE)
    paths = portal.app.openapi()["paths"]
    for template, item in paths.items():
        path = template.replace("{project_id}", "1").replace("{instance_id}", "1")
        path = path.replace("{tenant}", "acme").replace("{user_id}", "1")
        documented = ", ".join(sorted(m.upper() for m in item))
        for method in ("OPTIONS", "PUT"):
            if method.lower() in item:
                continue
            r = await alice.request(method, path)
            assert r.status_code == 405, (method, path)
            assert r.headers["allow"] == documented, (method, path)
            assert "detail" in r.json()
