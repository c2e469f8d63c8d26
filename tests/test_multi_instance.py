"""Two real uvicorn instances in separate processes sharing Redis, then PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from refetch.backends.postgres import notify_in_transaction

from .conftest import (
    POSTGRES_DSN,
    TYPES,
    SharedStream,
    Stream,
    free_port,
    require_service,
    unique_name,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent


class Instance:
    def __init__(self, backend_url: str) -> None:
        self.backend_url = backend_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Instance:
        env = {**os.environ, "REFETCH_BACKEND": self.backend_url}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "uvicorn", "tests.instance_app:app",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
            cwd=ROOT, env=env,
        )  # fmt: skip
        async with httpx.AsyncClient() as http, asyncio.timeout(20):
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"instance exited with {self.process.returncode}")
                try:
                    if (await http.get(f"{self.url}/health")).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.terminate()
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    async def notify(self, type_: str, key: str | None = None) -> str:
        params = {"type": type_} if key is None else {"type": type_, "key": key}
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{self.url}/notify", params=params)
        r.raise_for_status()
        cursor: str = r.json()["cursor"]
        return cursor

    @property
    def updates(self) -> str:
        return f"{self.url}/updates"


@pytest.fixture(params=["redis", "postgres"])
async def stream(request: pytest.FixtureRequest) -> AsyncIterator[SharedStream]:
    kind: str = request.param
    require_service(kind)
    shared = SharedStream(kind, unique_name("refetch_mp"))
    try:
        yield shared
    finally:
        await shared.cleanup()


@pytest.fixture
async def two(stream: SharedStream) -> AsyncIterator[tuple[Instance, Instance]]:
    async with Instance(stream.url()) as a, Instance(stream.url()) as b:
        yield a, b


async def test_notify_on_instance_a_reaches_a_client_on_instance_b(
    two: tuple[Instance, Instance],
) -> None:
    a, b = two
    async with Stream(b.updates) as on_b:
        await a.notify("projects", "42")
        await wait_for(lambda: ("projects", "42") in on_b.invalidated(), 10)


async def test_reconnect_to_another_instance_with_the_cursor_gets_the_merged_replay(
    two: tuple[Instance, Instance],
) -> None:
    a, b = two
    async with Stream(a.updates) as on_a:
        first = await a.notify("progress")
        await wait_for(lambda: any(f.id == first for f in on_a.frames), 10)
    await a.notify("projects", "1")
    await b.notify("projects", "2")
    newest = await a.notify("compute")
    async with Stream(b.updates, last_event_id=first) as on_b:
        await wait_for(lambda: len(on_b.frames) >= 2, 10)
        assert on_b.frames[1].event == "invalidate"
        assert on_b.frames[1].id == newest
        assert on_b.frames[1].data == {
            "updates": [{"type": "projects", "keys": ["1", "2"]}, {"type": "compute"}]
        }


async def test_a_rolled_back_transaction_notifies_no_one(postgres_dsn: str) -> None:

    stream = SharedStream("postgres", unique_name("refetch_mp"))
    async with Instance(stream.url()) as a, Instance(stream.url()) as b:
        try:
            await _rollback_then_commit(stream, a, b)
        finally:
            await stream.cleanup()


async def _rollback_then_commit(stream: SharedStream, a: Instance, b: Instance) -> None:
    import asyncpg

    async with Stream(a.updates) as on_a, Stream(b.updates) as on_b:
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:

            class Rollback(Exception):
                pass

            with pytest.raises(Rollback):
                async with conn.transaction():
                    await notify_in_transaction(
                        conn, "projects", "rolled-back", types=TYPES, table=stream.name
                    )
                    raise Rollback
            async with conn.transaction():
                await notify_in_transaction(
                    conn, "projects", "committed", types=TYPES, table=stream.name
                )
        finally:
            await conn.close()
        for s in (on_a, on_b):
            await wait_for(lambda s=s: ("projects", "committed") in s.invalidated(), 10)
            assert ("projects", "rolled-back") not in s.invalidated()


async def test_notify_in_an_sqlalchemy_transaction_is_delivered_on_commit_only(
    postgres_dsn: str,
) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from refetch import UpdatesEndpoint, UpdateService
    from refetch.backends.postgres import notify_in_sqlalchemy

    from .conftest import serve

    shared = SharedStream("postgres", unique_name("refetch_sa"))
    engine = create_async_engine(POSTGRES_DSN.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with (
            UpdateService(TYPES, backend=shared.url(), close_on_signals=False) as hub,
            serve(UpdatesEndpoint(hub)) as url,
            Stream(url) as client,
        ):
            async with engine.connect() as conn:
                await notify_in_sqlalchemy(
                    conn, "projects", "rolled-back", types=TYPES, table=shared.name
                )
                await conn.rollback()
            async with engine.begin() as conn:
                await notify_in_sqlalchemy(
                    conn, "projects", "committed", types=TYPES, table=shared.name
                )
            await wait_for(lambda: ("projects", "committed") in client.invalidated(), 10)
            assert ("projects", "rolled-back") not in client.invalidated()
    finally:
        await engine.dispose()
        await shared.cleanup()
