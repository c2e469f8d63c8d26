"""Fixtures for the portal: the simulator and the portal on real uvicorn servers, on SQLite
or on the real PostgreSQL (a fresh schema per test), plus clients and stream readers."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from portal.app import create_app
from portal.config import Settings
from portal.simulator import create_app as create_simulator
from portal.simulator.app import Simulator

from ..conftest import Stream as BaseStream
from ..conftest import free_port, serve, wait_for

# The standard local PostgreSQL, or the throwaway one tests/services.py started.
POSTGRES_DSN = os.environ.get(
    "REFETCH_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


async def _postgres_schema() -> AsyncIterator[str]:
    try:
        conn = await asyncpg.connect(POSTGRES_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL at {POSTGRES_DSN} is required in CI: {exc!r}")
        pytest.skip(f"PostgreSQL NOT TESTED: {POSTGRES_DSN} unreachable ({exc!r})")
    schema = f"portal_test_{secrets.token_hex(6)}"
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield schema
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """Settings fields that pick the database; test modules narrow it with `parametrize`."""
    if request.param == "sqlite":
        yield {"database_url": f"sqlite:///{tmp_path / 'portal.db'}"}
        return
    async for schema in _postgres_schema():
        yield {"database_url": POSTGRES_DSN, "database_schema": schema}


@dataclass
class SimulatorHandle:
    url: str
    state: Simulator
    http: httpx.AsyncClient

    async def set_mode(self, mode: str, endpoint: str = "all") -> None:
        r = await self.http.put(f"{self.url}/control/modes/{endpoint}", json={"mode": mode})
        r.raise_for_status()


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorHandle]:
    app = create_simulator(tick=None)  # time stands still; tests step the world
    async with app.router.lifespan_context(app), serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            yield SimulatorHandle(url, app.state.simulator, http)


@dataclass
class PortalHandle:
    url: str
    app: Any
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    notes: list[tuple[str, str | None, frozenset[str] | None]] = field(default_factory=list)

    async def client(self, email: str | None = None, *, cookie: bool = False) -> httpx.AsyncClient:
        """A client for the API, logged in as `email` with a bearer token (or the cookie)."""
        http = httpx.AsyncClient(base_url=self.url, timeout=10)
        self.clients.append(http)
        if email is not None:
            r = await http.post("/api/login", json={"email": email, "password": "demo"})
            assert r.status_code == 200, r.text
            body = r.json()
            if cookie:
                http.headers["X-CSRF-Token"] = body["csrf_token"]
            else:
                http.cookies.clear()
                http.headers["Authorization"] = f"Bearer {body['token']}"
        return http

    def notified(self, type_: str) -> list[tuple[str, str | None, frozenset[str] | None]]:
        return [n for n in self.notes if n[0] == type_]


def portal_settings(database: dict[str, Any], simulator_url: str) -> Settings:
    return Settings(
        simulator_url=simulator_url,
        progress_interval=0.05,
        images_interval=0.05,
        shoots_interval=0.05,
        poll_timeout=2.0,
        poll_max_backoff=0.2,
        # These tests start from the pollers' first values without any page open; polling on
        # demand (the portal's default) has its own tests in test_pollers_on_demand.py.
        poll_on_demand=False,
        provider_step=0.05,
        min_interval=0.02,
        close_on_signals=False,
        session_secret="test-secret",
        session_check_interval=0.05,
        operators=frozenset({"alice@acme.test"}),
        **database,
    )


@pytest.fixture
async def portal(
    database: dict[str, Any], simulator: SimulatorHandle
) -> AsyncIterator[PortalHandle]:
    app = create_app(portal_settings(database, simulator.url))
    async with app.router.lifespan_context(app), serve(app) as url:
        handle = PortalHandle(url, app)
        service = app.state.updates
        original = service.notify

        def spy(type_: Any, key: Any = None, *, audience: Any = None) -> None:
            handle.notes.append(
                (str(type_), None if key is None else str(key), audience and frozenset(audience))
            )
            original(type_, key, audience=audience)

        service.notify = spy
        # the pollers' first values, so tests start from a known, fresh state
        worker = app.state.worker
        await wait_for(lambda: all(worker.latest(p.name).has_value for p in worker.pollers))
        try:
            yield handle
        finally:
            await asyncio.gather(*(c.aclose() for c in handle.clients))


class Stream(BaseStream):
    """The portal's update stream for an API client: its bearer token or its cookie."""

    def __init__(self, url: str, client: httpx.AsyncClient, **kwargs: Any) -> None:
        headers = {}
        if "authorization" in client.headers:
            headers["authorization"] = client.headers["authorization"]
        self._http = httpx.AsyncClient(
            cookies=client.cookies, timeout=httpx.Timeout(10.0, read=None)
        )
        super().__init__(f"{url}/api/updates", headers=headers, client=self._http, **kwargs)

    async def __aexit__(self, *exc: object) -> None:
        await super().__aexit__(*exc)
        await self._http.aclose()


ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def portal_process(tmp_path: Path, **env: str) -> AsyncIterator[int]:
    """`python -m portal` with these settings; yields its port once it answers."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "portal",
        cwd=ROOT,
        env={
            **os.environ,
            "PORT": str(port),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.db'}",
            "SESSION_SECRET": "test",
            "SIMULATOR_URL": "http://127.0.0.1:9",  # nobody: the pollers back off
            **env,
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            async with asyncio.timeout(30):
                while True:
                    assert process.returncode is None, "python -m portal exited"
                    try:
                        await client.get(f"http://127.0.0.1:{port}/api/me")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
        yield port
    finally:
        process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
