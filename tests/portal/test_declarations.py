"""The portal's routes declare what they read and change (refetch.testing's contract check),
and every mutation that succeeds notifies (strict mode)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from portal.app import create_app
from portal.updates import UpdateType
from refetch.testing import StrictMutations, UndeclaredMutation, undeclared_routes

from .conftest import portal_settings

ALICE = "alice@acme.test"
NOBODY = "http://127.0.0.1:9"  # no simulator: the pollers back off, the API works


def test_every_route_declares_what_it_reads_and_changes(tmp_path: Path) -> None:
    app = create_app(portal_settings({"database_url": f"sqlite:///{tmp_path / 'p.db'}"}, NOBODY))
    assert undeclared_routes(app, UpdateType) == []
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            if method in {"post", "put", "patch", "delete"}:
                assert "changes" in operation.get("x-refetch", {}), (method, path)

    @app.post("/api/projects/{project_id}/archive", tags=[UpdateType.projects])
    async def archive(project_id: int) -> None: ...

    assert undeclared_routes(app, UpdateType) == [
        "POST /api/projects/{project_id}/archive: a mutation that declares nothing; add "
        "dependencies=[changes(...)] or [changes_nothing()]"
    ]


@pytest.mark.timeout(30)
async def test_every_successful_mutation_notifies(tmp_path: Path) -> None:
    settings = portal_settings({"database_url": f"sqlite:///{tmp_path / 'p.db'}"}, NOBODY)
    # no UI: its mount at / would answer the route added below
    app = create_app(replace(settings, ui_dist=tmp_path / "no-ui"))

    @app.post("/api/touch")
    async def touch() -> dict[str, str]:
        return {"touched": "nothing declared"}

    strict = httpx.ASGITransport(StrictMutations(app, app.state.updates))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=strict, base_url="http://portal") as http,
    ):
        login = await http.post("/api/login", json={"email": ALICE, "password": "demo"})
        http.cookies.clear()
        http.headers["Authorization"] = f"Bearer {login.json()['token']}"
        # first: the provider's steps (after an instance is created) move the cursor too
        with pytest.raises(UndeclaredMutation, match="POST /api/touch answered 200"):
            await http.post("/api/touch")
        project = (await http.post("/api/projects", json={"name": "strict"})).json()["id"]
        assert (await http.patch(f"/api/projects/{project}", json={"name": "b"})).is_success
        created = await http.post(
            f"/api/projects/{project}/instances", json={"name": "vm", "flavor": "s1.small"}
        )
        assert created.status_code == 201
        invited = await http.post(
            "/api/tenants/acme/members", json={"email": "new@acme.test", "role": "viewer"}
        )
        assert invited.status_code == 202
        [invitation] = (await http.get("/api/tenants/acme/invitations")).json()
        revoked = await http.delete(f"/api/tenants/acme/invitations/{invitation['id']}")
        assert revoked.status_code == 204
        assert (await http.delete(f"/api/projects/{project}")).status_code == 204
