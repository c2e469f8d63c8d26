"""The portal against an attacker (issue 20): sessions expire, logins are throttled, a tenant
always keeps an admin, nothing crosses tenants, members are invited, ids are never reused.

Real uvicorn servers on loopback ports; assertions on what the clients get."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update

from portal.config import Settings
from portal.db import create_engine
from portal.models import LoginSession
from portal.passwords import hash_password
from refetch import StreamRejected

from ..conftest import wait_for
from .conftest import PortalHandle, SimulatorHandle, Stream, portal_settings
from .test_poller_leases import portal_instance

ALICE, BOB, CAROL = "alice@acme.test", "bob@acme.test", "carol@globex.test"
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)

sqlite_only = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


async def age_sessions(portal: PortalHandle, **values: datetime) -> None:
    """Set up: move every login session's timestamps (as if time had passed)."""
    async with portal.app.state.sessionmaker() as db:
        await db.execute(update(LoginSession).values(**values))
        await db.commit()


@contextlib.asynccontextmanager
async def custom_portal(
    database: dict[str, Any], simulator: SimulatorHandle, **overrides: Any
) -> AsyncIterator[PortalHandle]:
    settings: Settings = replace(portal_settings(database, simulator.url), **overrides)
    async with portal_instance(settings) as handle:
        yield handle


def assert_rejected(stream: Stream, status: int) -> None:
    assert stream._task is not None and stream._task.done()
    with pytest.raises(StreamRejected) as info:
        stream._task.result()
    assert info.value.status_code == status


# -- sessions ------------------------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize("column", ["last_seen_at", "created_at"])
async def test_an_expired_session_opens_neither_the_api_nor_the_stream(
    portal: PortalHandle, column: str
) -> None:
    bob = await portal.client(BOB)
    assert (await bob.get("/api/me")).status_code == 200
    # idle for 26 years (last_seen_at), or signed in 26 years ago (created_at)
    await age_sessions(portal, **{column: LONG_AGO})
    r = await bob.get("/api/me")
    assert r.status_code == 401 and "not signed in" in r.json()["detail"]
    r = await bob.get("/api/updates", headers={"accept": "text/event-stream"})
    assert r.status_code == 401


@sqlite_only
async def test_an_open_stream_ends_when_its_session_expires(portal: PortalHandle) -> None:
    bob = await portal.client(BOB)
    stream = Stream(portal.url, bob, types=["projects"])
    async with stream:
        await age_sessions(portal, created_at=LONG_AGO)
        await wait_for(lambda: stream.ended, 10)
        assert_rejected(stream, 401)  # the reconnect finds the session expired


@sqlite_only
async def test_use_renews_the_idle_lifetime_and_sessions_are_listed(
    portal: PortalHandle,
) -> None:
    bob, other = await portal.client(BOB), await portal.client(BOB)
    a_while_ago = datetime.now(UTC) - timedelta(minutes=10)  # idle 30 min, renewed each minute
    await age_sessions(portal, last_seen_at=a_while_ago)
    r = await bob.get("/api/sessions")
    assert r.status_code == 200
    sessions = r.json()
    assert len(sessions) == 2 and sum(s["current"] for s in sessions) == 1
    mine = next(s for s in sessions if s["current"])
    theirs = next(s for s in sessions if not s["current"])
    # this request renewed this session (not the other one)
    assert datetime.fromisoformat(mine["last_seen_at"]) > a_while_ago + timedelta(minutes=5)
    assert datetime.fromisoformat(theirs["last_seen_at"]) < a_while_ago + timedelta(seconds=1)
    created = datetime.fromisoformat(mine["created_at"])
    assert datetime.fromisoformat(mine["expires_at"]) <= created + timedelta(hours=12)
    assert (await other.get("/api/me")).status_code == 200


@sqlite_only
async def test_ending_one_session_ends_its_streams_only_and_sign_out_everywhere_ends_all(
    portal: PortalHandle,
) -> None:
    laptop, phone = await portal.client(BOB), await portal.client(BOB)
    alice = await portal.client(ALICE)
    phone_id = next(s["id"] for s in (await phone.get("/api/sessions")).json() if s["current"])
    on_laptop = Stream(portal.url, laptop, types=["projects"])
    on_phone = Stream(portal.url, phone, types=["projects"])
    async with on_laptop, on_phone:
        assert (await laptop.delete(f"/api/sessions/{phone_id}")).status_code == 204
        await wait_for(lambda: on_phone.ended, 10)
        assert_rejected(on_phone, 401)
        assert (await phone.get("/api/me")).status_code == 401
        # the laptop's stream was not touched: it hears the next change without a reconnect
        pid = (await alice.post("/api/projects", json={"name": "after"})).json()["id"]
        await wait_for(lambda: on_laptop.saw("projects", str(pid)), 10)
        assert len(on_laptop.of("hello")) == 1
        assert (await laptop.delete(f"/api/sessions/{phone_id}")).status_code == 404

        other = await portal.client(BOB)
        assert (await laptop.delete("/api/sessions")).status_code == 204  # everywhere
        await wait_for(lambda: on_laptop.ended, 10)
        assert_rejected(on_laptop, 401)
    for http in (laptop, other):
        assert (await http.get("/api/me")).status_code == 401
    assert (await alice.get("/api/me")).status_code == 200  # someone else's sessions stay


@sqlite_only
async def test_signing_out_in_one_browser_ends_that_browsers_stream_only(
    portal: PortalHandle,
) -> None:
    """Bob in two browsers (two cookie jars): one signs out. Its stream ends and its
    reconnect gets 401; the other browser's stream stays open and keeps hearing changes.
    The hub sees one subject (bob's id) with two sessions (the logins' public ids)."""
    first, second = await portal.client(BOB, cookie=True), await portal.client(BOB, cookie=True)
    alice = await portal.client(ALICE)
    ids = {s["id"] for s in (await first.get("/api/sessions")).json()}
    me = (await first.get("/api/me")).json()["id"]
    on_first = Stream(portal.url, first, types=["projects"])
    on_second = Stream(portal.url, second, types=["projects"])
    async with on_first, on_second:
        held = portal.app.state.updates.connections()
        assert {(c.subject, c.session) for c in held} == {(str(me), i) for i in ids}
        assert (await first.post("/api/logout")).status_code == 204
        await wait_for(lambda: on_first.ended, 10)
        assert_rejected(on_first, 401)
        pid = (await alice.post("/api/projects", json={"name": "after sign-out"})).json()["id"]
        await wait_for(lambda: on_second.saw("projects", str(pid)), 10)
        assert len(on_second.of("hello")) == 1 and not on_second.ended
    assert (await first.get("/api/me")).status_code == 401
    assert (await second.get("/api/me")).status_code == 200


# -- login throttling ----------------------------------------------------------------------


@sqlite_only
async def test_wrong_passwords_lock_the_account_even_for_the_right_password(
    database: dict[str, Any], simulator: SimulatorHandle
) -> None:
    # A lock of a minute at least: it is still on when the test looks.
    async with custom_portal(
        database, simulator, login_account_tries=3, login_lock_base=60.0
    ) as portal:
        http = await portal.client()
        for _ in range(4):  # three free tries, the fourth failure locks
            r = await http.post("/api/login", json={"email": BOB, "password": "guess"})
            assert r.status_code == 401
        r = await http.post("/api/login", json={"email": BOB, "password": "demo"})
        assert r.status_code == 429
        assert r.headers["content-type"] == "application/json"
        assert 0 < int(r.headers["retry-after"]) <= 60
        assert r.json()["retry_after"] == int(r.headers["retry-after"])
        assert "too many failed logins" in r.json()["detail"]
        # another account from the same address is not locked
        r = await http.post("/api/login", json={"email": ALICE, "password": "demo"})
        assert r.status_code == 200


@sqlite_only
async def test_guessing_many_accounts_from_one_address_is_throttled(
    database: dict[str, Any], simulator: SimulatorHandle
) -> None:
    async with custom_portal(
        database, simulator, login_address_tries=4, login_lock_base=60.0
    ) as portal:
        http = await portal.client()
        statuses = [
            (
                await http.post(
                    "/api/login", json={"email": f"user{i}@spray.test", "password": "demo"}
                )
            ).status_code
            for i in range(6)
        ]
        assert statuses == [401] * 5 + [429]
        r = await http.post("/api/login", json={"email": BOB, "password": "demo"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


@sqlite_only
async def test_logins_beyond_the_hashing_slots_get_429_at_once(
    database: dict[str, Any], simulator: SimulatorHandle
) -> None:
    # one hashing thread, nobody waiting: of logins sent together, those that find the
    # thread taken are turned away without hashing
    async with custom_portal(database, simulator, password_workers=1, password_queue=0) as portal:
        http = await portal.client()
        answers = await asyncio.gather(
            *(
                http.post("/api/login", json={"email": f"u{i}@busy.test", "password": "x"})
                for i in range(16)
            )
        )
        busy = [r for r in answers if r.status_code == 429]
        assert busy and {r.status_code for r in answers} == {401, 429}
        assert all(r.headers["retry-after"] == "1" == str(r.json()["retry_after"]) for r in busy)
        assert "at once" in busy[0].json()["detail"]


def test_session_lifetimes_from_the_environment_must_be_positive_seconds() -> None:
    settings = Settings.from_env({"SESSION_IDLE_TIMEOUT": "600", "SESSION_MAX_AGE": "3600"})
    assert (settings.session_idle_timeout, settings.session_max_age) == (600, 3600)
    for raw in ("abc", "0", "-5", "nan", "inf"):
        with pytest.raises(ValueError, match="SESSION_MAX_AGE must be a positive number"):
            Settings.from_env({"SESSION_MAX_AGE": raw})


# -- a tenant always keeps an admin ----------------------------------------------------------

ROUNDS = 8


async def _member_ids(http: httpx.AsyncClient, tenant: str = "acme") -> dict[str, int]:
    members = (await http.get(f"/api/tenants/{tenant}/members")).json()
    return {m["email"]: m["user_id"] for m in members}


async def _admins(http: httpx.AsyncClient) -> list[str]:
    members = (await http.get("/api/tenants/acme/members")).json()
    return sorted(m["email"] for m in members if m["role"] == "admin")


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    portal: PortalHandle,
) -> None:
    alice, bob = await portal.client(ALICE), await portal.client(BOB)
    ids = await _member_ids(alice)
    r = await alice.patch(f"/api/tenants/acme/members/{ids[BOB]}", json={"role": "admin"})
    assert r.status_code == 200
    for _ in range(ROUNDS):
        demote_bob, demote_alice = await asyncio.gather(
            alice.patch(f"/api/tenants/acme/members/{ids[BOB]}", json={"role": "member"}),
            bob.patch(f"/api/tenants/acme/members/{ids[ALICE]}", json={"role": "member"}),
        )
        # one wins; the other is refused: 409 (last admin), or 403 if its caller was
        # already demoted when it signed the request in
        statuses = sorted((demote_bob.status_code, demote_alice.status_code))
        assert statuses in ([200, 403], [200, 409]), statuses
        [admin] = await _admins(alice)
        winner = alice if admin == ALICE else bob
        loser = BOB if admin == ALICE else ALICE
        r = await winner.patch(f"/api/tenants/acme/members/{ids[loser]}", json={"role": "admin"})
        assert r.status_code == 200


async def test_two_admins_removing_each_other_at_once_leave_one_admin(
    portal: PortalHandle,
) -> None:
    clients = {ALICE: await portal.client(ALICE), BOB: await portal.client(BOB)}
    ids = await _member_ids(clients[ALICE])
    r = await clients[ALICE].patch(f"/api/tenants/acme/members/{ids[BOB]}", json={"role": "admin"})
    assert r.status_code == 200
    for _ in range(ROUNDS):
        remove_bob, remove_alice = await asyncio.gather(
            clients[ALICE].delete(f"/api/tenants/acme/members/{ids[BOB]}"),
            clients[BOB].delete(f"/api/tenants/acme/members/{ids[ALICE]}"),
        )
        # one wins; the other is refused: 409 (last admin), or 404 if its caller was
        # already out of the tenant when it signed the request in
        statuses = sorted((remove_bob.status_code, remove_alice.status_code))
        assert statuses in ([204, 404], [204, 409]), statuses
        survivor = ALICE if remove_bob.status_code == 204 else BOB
        gone = BOB if survivor == ALICE else ALICE
        assert await _admins(clients[survivor]) == [survivor]
        # back in: invited, accepted, promoted
        r = await clients[survivor].post("/api/tenants/acme/members", json={"email": gone})
        assert r.status_code == 202
        [invitation] = (await clients[gone].get("/api/invitations")).json()
        accepted = await clients[gone].post(f"/api/invitations/{invitation['id']}/accept")
        assert accepted.status_code == 200
        r = await clients[survivor].patch(
            f"/api/tenants/acme/members/{ids[gone]}", json={"role": "admin"}
        )
        assert r.status_code == 200


# -- nothing across tenants ------------------------------------------------------------------


@sqlite_only
async def test_the_hubs_metrics_are_for_operators_not_tenant_admins(
    database: dict[str, Any], simulator: SimulatorHandle
) -> None:
    async with custom_portal(database, simulator, metrics_token="scrape-me") as portal:
        carol, alice = await portal.client(CAROL), await portal.client(ALICE)  # alice: operator
        r = await carol.get("/api/admin/metrics")
        assert r.status_code == 403 and "operator" in r.json()["detail"]
        assert (await alice.get("/api/admin/metrics")).status_code == 200
        # carol still sees her own tenant's streams
        assert (await carol.get("/api/admin/connections")).status_code == 200
        scraper = await portal.client()
        for token, status in (("scrape-me", 200), ("scrape-you", 401)):
            r = await scraper.get(
                "/api/admin/metrics", headers={"authorization": f"Bearer {token}"}
            )
            assert r.status_code == status
        # the scraper's token opens nothing else
        r = await scraper.get("/api/projects", headers={"authorization": "Bearer scrape-me"})
        assert r.status_code == 401


@sqlite_only
async def test_only_signed_in_callers_get_the_refetch_cursor(portal: PortalHandle) -> None:
    async with httpx.AsyncClient(base_url=portal.url) as anonymous:
        for r in (
            await anonymous.get("/api/projects"),
            await anonymous.get("/api/flavors"),
            await anonymous.post("/api/login", json={"email": BOB, "password": "nope"}),
            await anonymous.get("/openapi.json"),
        ):
            assert "refetch-cursor" not in r.headers, r.request.url
        r = await anonymous.post("/api/login", json={"email": BOB, "password": "demo"})
        assert r.status_code == 200 and "refetch-cursor" in r.headers
    bob = await portal.client(BOB)
    assert "refetch-cursor" in (await bob.get("/api/projects")).headers


# -- membership: invitations and join order ---------------------------------------------------


@sqlite_only
async def test_inviting_tells_nothing_about_who_exists_and_adds_nobody_without_consent(
    portal: PortalHandle,
) -> None:
    carol, alice = await portal.client(CAROL), await portal.client(ALICE)
    exists = await carol.post("/api/tenants/globex/members", json={"email": BOB})
    missing = await carol.post("/api/tenants/globex/members", json={"email": "x@nowhere.test"})
    assert exists.status_code == missing.status_code == 202
    assert {k: v for k, v in exists.json().items() if k != "email"} == {
        k: v for k, v in missing.json().items() if k != "email"
    }
    assert set(exists.headers) - {"date", "content-length", "etag"} == set(missing.headers) - {
        "date",
        "content-length",
        "etag",
    }
    # bob is not a member until he accepts
    assert BOB not in await _member_ids(carol, "globex")
    bob = await portal.client(BOB)
    assert [t["slug"] for t in (await bob.get("/api/me")).json()["tenants"]] == ["acme"]
    [invitation] = (await bob.get("/api/invitations")).json()
    assert (invitation["tenant"], invitation["role"]) == ("globex", "member")
    pending = (await carol.get("/api/tenants/globex/invitations")).json()
    assert sorted(p["email"] for p in pending) == [BOB, "x@nowhere.test"]
    # nobody else can accept it
    assert (await alice.post(f"/api/invitations/{invitation['id']}/accept")).status_code == 404
    assert (await bob.delete(f"/api/invitations/{invitation['id']}")).status_code == 204
    assert BOB not in await _member_ids(carol, "globex")
    assert (await bob.get("/api/invitations")).json() == []


@sqlite_only
async def test_the_default_tenant_is_the_one_joined_first(portal: PortalHandle) -> None:
    # carol's own tenant is globex (tenant 2); acme (tenant 1) invites her later
    carol, alice = await portal.client(CAROL), await portal.client(ALICE)
    assert (await alice.post("/api/tenants/acme/members", json={"email": CAROL})).status_code == 202
    [invitation] = (await carol.get("/api/invitations")).json()
    assert (await carol.post(f"/api/invitations/{invitation['id']}/accept")).status_code == 200
    me = (await carol.get("/api/me")).json()
    assert [t["slug"] for t in me["tenants"]] == ["globex", "acme"]
    r = await carol.post("/api/projects", json={"name": "where-does-it-go"})
    assert r.status_code == 201 and r.json()["tenant"] == "globex"


# -- ids -------------------------------------------------------------------------------------


@sqlite_only
async def test_ids_of_deleted_projects_are_never_reused(portal: PortalHandle) -> None:
    bob = await portal.client(BOB)
    ids = []
    for _ in range(3):
        pid = (await bob.post("/api/projects", json={"name": "churn"})).json()["id"]
        assert (await bob.delete(f"/api/projects/{pid}")).status_code == 204
        ids.append(pid)
    assert len(set(ids)) == 3


OLD_SCHEMA = """
CREATE TABLE tenants (id INTEGER NOT NULL, slug VARCHAR(40) NOT NULL, name VARCHAR(100) NOT NULL,
    PRIMARY KEY (id), UNIQUE (slug));
CREATE TABLE users (id INTEGER NOT NULL, email VARCHAR(200) NOT NULL, name VARCHAR(100) NOT NULL,
    password_hash VARCHAR(300) NOT NULL, PRIMARY KEY (id), UNIQUE (email));
CREATE TABLE login_sessions (token_hash VARCHAR(64) NOT NULL, user_id INTEGER NOT NULL,
    csrf_token VARCHAR(64) NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (token_hash),
    FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE);
CREATE INDEX ix_login_sessions_user_id ON login_sessions (user_id);
CREATE TABLE memberships (user_id INTEGER NOT NULL, tenant_id INTEGER NOT NULL,
    role VARCHAR(20) NOT NULL, PRIMARY KEY (user_id, tenant_id),
    FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE,
    FOREIGN KEY(tenant_id) REFERENCES tenants (id) ON DELETE CASCADE);
CREATE TABLE projects (id INTEGER NOT NULL, tenant_id INTEGER NOT NULL, name VARCHAR(100) NOT NULL,
    created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, PRIMARY KEY (id),
    UNIQUE (tenant_id, name), FOREIGN KEY(tenant_id) REFERENCES tenants (id) ON DELETE CASCADE);
CREATE INDEX ix_projects_tenant_id ON projects (tenant_id);
CREATE TABLE instances (id INTEGER NOT NULL, project_id INTEGER NOT NULL, name VARCHAR(63) NOT NULL,
    flavor VARCHAR(40) NOT NULL, image VARCHAR(100), status VARCHAR(20) NOT NULL,
    created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, PRIMARY KEY (id),
    UNIQUE (project_id, name), FOREIGN KEY(project_id) REFERENCES projects (id) ON DELETE CASCADE);
CREATE INDEX ix_instances_project_id ON instances (project_id);
CREATE INDEX ix_instances_status ON instances (status);
"""


async def test_a_database_of_the_previous_portal_is_brought_up_to_date(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(OLD_SCHEMA)
        old.executemany(
            "INSERT INTO tenants (id, slug, name) VALUES (?, ?, ?)",
            [(1, "acme", "Acme"), (2, "globex", "Globex")],
        )
        old.execute(
            "INSERT INTO users VALUES (1, 'dora@old.test', 'Dora', ?)", (hash_password("demo"),)
        )
        old.executemany("INSERT INTO memberships VALUES (1, ?, ?)", [(2, "admin"), (1, "member")])
        old.execute(
            "INSERT INTO projects VALUES (5, 1, 'kept', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
        old.commit()
    database = {"database_url": f"sqlite:///{path}"}
    async with custom_portal(database, simulator) as portal:
        dora = await portal.client("dora@old.test")
        me = (await dora.get("/api/me")).json()
        assert [t["slug"] for t in me["tenants"]] == ["acme", "globex"]  # old order kept
        assert [p["id"] for p in (await dora.get("/api/projects")).json()] == [5]
        ids = []
        for _ in range(3):
            r = await dora.post("/api/projects", json={"name": "churn", "tenant": "acme"})
            assert r.status_code == 201
            ids.append(r.json()["id"])
            assert (await dora.delete(f"/api/projects/{ids[-1]}")).status_code == 204
        assert len(set(ids)) == 3 and min(ids) > 5


async def test_columns_added_since_are_added_to_an_existing_database(
    database: dict[str, Any], simulator: SimulatorHandle
) -> None:
    async with custom_portal(database, simulator) as portal:
        bob = await portal.client(BOB)
        token = bob.headers["authorization"]
    # the database as the previous portal left it: no join order, no last use
    settings = portal_settings(database, simulator.url)
    engine = create_engine(settings)
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE memberships DROP COLUMN joined_at"))
        await conn.execute(text("ALTER TABLE login_sessions DROP COLUMN last_seen_at"))
    await engine.dispose()
    async with custom_portal(database, simulator) as portal:
        bob = await portal.client()
        bob.headers["authorization"] = token  # the session from before lives on
        me = (await bob.get("/api/me")).json()
        assert [t["slug"] for t in me["tenants"]] == ["acme"]
        [session] = (await bob.get("/api/sessions")).json()
        assert session["current"]
        seen, created = (datetime.fromisoformat(session[k]) for k in ("last_seen_at", "created_at"))
        assert seen >= created
