"""Faults: a broker connection cut or a broker gone mid-stream. Nothing lost, nobody silently
stale, the app never crashes; the contract is checked within a timeout, never by sleeping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from refetch import PublishError, UpdatesEndpoint, UpdateService

from .conftest import (
    POSTGRES_DSN,
    REDIS_URL,
    TYPES,
    SharedStream,
    Stream,
    serve,
    service_port,
    unique_name,
    wait_for,
)


async def kill_redis_clients(name: str) -> int:
    """Cut every Redis connection that carries ``name`` (only ours: CLIENT KILL ID)."""
    import redis.asyncio

    admin = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        killed = 0
        for client in await admin.client_list():
            if client.get("name") == name:
                killed += await admin.execute_command("CLIENT", "KILL", "ID", client["id"])
        return killed
    finally:
        await admin.aclose()


async def kill_postgres_sessions(application_name: str) -> int:
    import asyncpg

    admin = await asyncpg.connect(POSTGRES_DSN)
    try:
        rows = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            application_name,
        )
        return len(rows)
    finally:
        await admin.close()


def hub(backend: Any) -> UpdateService:
    return UpdateService(TYPES, backend=backend, min_interval=0.02, close_on_signals=False)


async def test_redis_connection_killed_listener_reconnects_and_replays_exactly(
    redis_url: str,
) -> None:
    shared = SharedStream("redis", unique_name("refetch_f"))
    name = unique_name("victim")
    try:
        async with (
            hub(shared.url(client_name=name)) as victim,
            hub(shared.url()) as other,
            serve(UpdatesEndpoint(victim)) as url,
            Stream(url) as client,
        ):
            first = await other.publish("progress")
            await wait_for(lambda: any(f.id == first for f in client.frames), 10)
            assert await kill_redis_clients(name) >= 1
            await other.publish("projects", key="while-cut")
            newest = await other.publish("compute")
            await wait_for(lambda: any(f.id == newest for f in client.frames), 15)
            assert ("projects", "while-cut") in client.invalidated()
            assert not client.of("resync")  # the stream resumed exactly: no refetch storm
    finally:
        await shared.cleanup()


async def test_postgres_session_terminated_listener_reconnects_and_replays_exactly(
    postgres_dsn: str,
) -> None:
    shared = SharedStream("postgres", unique_name("refetch_f"))
    name = unique_name("victim")
    try:
        async with (
            hub(shared.url(application_name=name)) as victim,
            hub(shared.url()) as other,
            serve(UpdatesEndpoint(victim)) as url,
            Stream(url) as client,
        ):
            first = await other.publish("progress")
            await wait_for(lambda: any(f.id == first for f in client.frames), 10)
            assert await kill_postgres_sessions(name) >= 1
            await other.publish("projects", key="while-cut")
            newest = await other.publish("compute")
            await wait_for(lambda: any(f.id == newest for f in client.frames), 15)
            assert ("projects", "while-cut") in client.invalidated()
            assert not client.of("resync")
            # The victim publishes again too (its pool reconnects).
            await wait_for(lambda: victim.statistics().listener_down is None, 15)
            mine = await victim.publish("images")
            await wait_for(lambda: any(f.id == mine for f in client.frames), 15)
    finally:
        await shared.cleanup()


@pytest.mark.parametrize("kind", ["redis", "postgres", "nats"])
async def test_broker_gone_local_clients_still_hear_and_everyone_catches_up_after(
    kind: str, tcp_proxy: Callable[[int], Any], request: pytest.FixtureRequest
) -> None:
    port = service_port(kind)
    request.getfixturevalue(
        {"redis": "redis_url", "postgres": "postgres_dsn", "nats": "nats_url"}[kind]
    )
    shared = SharedStream(kind, unique_name("refetch_f"))
    proxy = await tcp_proxy(port)
    through_proxy = shared.url().replace(f":{port}", f":{proxy.port}")
    try:
        async with (
            hub(through_proxy) as cut_off,
            hub(shared.url()) as healthy,
            serve(UpdatesEndpoint(cut_off)) as url_cut,
            serve(UpdatesEndpoint(healthy)) as url_ok,
            Stream(url_cut) as on_cut,
            Stream(url_ok) as on_ok,
        ):
            first = await healthy.publish("progress")
            await wait_for(lambda: any(f.id == first for f in on_cut.frames), 10)
            await proxy.cut()

            # The cut-off instance's own clients hear its notifies at once...
            cut_off.notify("projects", key="local")
            await wait_for(lambda: ("projects", "local") in on_cut.invalidated(), 10)
            # ...the awaitable variant says it failed (once the failure is known)...
            await wait_for(lambda: cut_off.statistics().publisher_down is not None, 15)
            with pytest.raises(PublishError):
                await cut_off.publish("images", key="awaited")
            # ...and updates from elsewhere wait in the broker.
            await healthy.publish("compute", key="remote")

            await proxy.restore()
            # Back: the missed remote update is replayed exactly, and the local one
            # that could not be published reaches the other instance's clients.
            await wait_for(lambda: ("compute", "remote") in on_cut.invalidated(), 20)
            await wait_for(lambda: ("projects", "local") in on_ok.invalidated(), 20)
            assert not on_cut.of("resync")
            # publish() fails fast while the instance knows the broker is away; it
            # works again once its publisher got through.
            await wait_for(lambda: cut_off.statistics().publisher_down is None, 20)
            newest = await cut_off.publish("gardener")
            await wait_for(lambda: any(f.id == newest for f in on_ok.frames), 10)
    finally:
        await shared.cleanup()


async def test_redis_stream_recreated_while_running_resyncs_every_client(redis_url: str) -> None:
    import redis.asyncio

    shared = SharedStream("redis", unique_name("refetch_f"))
    name = unique_name("victim")
    try:
        async with (
            hub(shared.url(client_name=name)) as victim,
            serve(UpdatesEndpoint(victim)) as url,
            Stream(url) as client,
        ):
            first = await victim.publish("progress")
            await wait_for(lambda: any(f.id == first for f in client.frames), 10)
            old_epoch = victim.cursor.split(".")[0]
            admin = redis.asyncio.Redis.from_url(REDIS_URL)
            await admin.delete(
                shared.name, f"{shared.name}:epoch"
            )  # as a restart without persistence
            await admin.aclose()
            await kill_redis_clients(name)
            await wait_for(lambda: client.of("resync"), 15)
            assert client.of("resync")[0].data == {"reason": "the update stream was recreated"}
            assert victim.cursor.split(".")[0] != old_epoch
            assert client.of("resync")[0].id == victim.cursor
    finally:
        await shared.cleanup()
