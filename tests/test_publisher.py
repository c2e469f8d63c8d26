"""Publishing from processes that serve no streams: refetch.Publisher, a real Flask app, a script.

Every test has a real ASGI hub on uvicorn reading the same broker stream, and asserts on
what its stream client receives.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from examples.flask_app import create_app as create_flask_app
from refetch import (
    BackendUnavailable,
    ConfigurationError,
    Publisher,
    PublishError,
    ServiceClosed,
    UnknownUpdateType,
    UpdatesEndpoint,
    UpdateService,
)

from .conftest import (
    TYPES,
    SharedStream,
    Stream,
    free_port,
    require_service,
    serve,
    unique_name,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def asgi_server(backend_url: str) -> AsyncIterator[tuple[UpdateService, str]]:
    async with UpdateService(
        TYPES, backend=backend_url, min_interval=0.01, close_on_signals=False
    ) as hub:
        async with serve(UpdatesEndpoint(hub)) as url:
            yield hub, url


@pytest.fixture(params=["redis", "postgres", "nats"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[SharedStream]:
    require_service(request.param)
    stream = SharedStream(request.param, unique_name("refetch_pub"))
    try:
        yield stream
    finally:
        await stream.cleanup()


async def test_a_publisher_reaches_an_asgi_servers_clients(broker: SharedStream) -> None:
    async with asgi_server(broker.url()) as (hub, url), Stream(url) as stream:
        with Publisher(broker.url(), types=TYPES) as publisher:
            cursor = await asyncio.to_thread(publisher.notify, "projects", key=42)
            # Written before the next update is read: a frame's id is the newest cursor
            # delivered, so two updates read in one batch would both be under the second.
            await wait_for(lambda: stream.saw("projects", "42"))
            audience = await asyncio.to_thread(publisher.notify, "compute", audience="tenant:x")
        await hub.publish("images")  # after the publisher's updates in the shared stream
        await wait_for(lambda: stream.saw("images"))
    frame = next(
        f
        for f in stream.of("invalidate")
        if ("projects", "42") in {(u.type, k) for u in f.updates for k in (u.keys or ())}
    )
    assert frame.id == cursor  # the Publisher's cursor is the one clients see
    assert audience.split(".")[0] == cursor.split(".")[0]
    assert not stream.saw("compute")  # an anonymous stream is not in tenant:x


async def test_flask_view_notifies_the_asgi_servers_stream(redis_url: str) -> None:
    stream_name = unique_name("refetch_flask")
    backend = f"{redis_url}?stream={stream_name}"
    shared = SharedStream("redis", stream_name)
    flask_app = create_flask_app(backend)
    client = flask_app.test_client()
    try:
        async with asgi_server(backend) as (_, url), Stream(url, types=["projects"]) as stream:
            created = await asyncio.to_thread(client.post, "/api/projects", json={"name": "web"})
            assert created.status_code == 201, created.text
            body = created.get_json()
            await wait_for(lambda: stream.saw("projects", body["id"]))
            bad = await asyncio.to_thread(client.post, "/api/projects", json={"nope": 1})
            assert bad.status_code == 400
        frame = stream.of("invalidate")[-1]
        assert frame.data == {"updates": [{"type": "projects", "keys": [body["id"]]}]}
        assert frame.id == body["cursor"]
    finally:
        flask_app.extensions["refetch"].close()
        await shared.cleanup()


async def test_a_script_publishes_and_exits(redis_url: str) -> None:
    stream_name = unique_name("refetch_script")
    backend = f"{redis_url}?stream={stream_name}"
    try:
        async with asgi_server(backend) as (_, url), Stream(url) as stream:
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "examples.notify", backend, "compute", "vm-7"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.returncode == 0, done.stderr
            await wait_for(lambda: stream.saw("compute", "vm-7"))
        assert stream.of("invalidate")[-1].id == done.stdout.strip()
    finally:
        await SharedStream("redis", stream_name).cleanup()


# Runs in a fresh interpreter: forking pytest itself (dozens of threads left by other
# tests) can copy a lock some thread holds, and the child then hangs on it.
_FORK_SCRIPT = """
import multiprocessing, sys, warnings
from refetch import Publisher

def child(publisher):
    publisher.notify("projects", key="child")
    publisher.close()

publisher = Publisher(sys.argv[1])
publisher.notify("projects", key="parent")
process = multiprocessing.get_context("fork").Process(target=child, args=(publisher,))
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
    process.start()
process.join(30)
assert process.exitcode == 0, process.exitcode
# The parent's connection still works after the child closed its own.
publisher.notify("projects", key="again")
publisher.close()
"""


async def test_a_forked_child_opens_its_own_connection(redis_url: str) -> None:
    # gunicorn --preload and Celery's prefork pool fork after the app (and its
    # Publisher) was created, sometimes after it was already used.
    stream_name = unique_name("refetch_fork")
    backend = f"{redis_url}?stream={stream_name}"
    try:
        async with asgi_server(backend) as (_, url), Stream(url) as stream:
            result = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", _FORK_SCRIPT, backend],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=ROOT,
            )
            assert result.returncode == 0, result.stderr
            await wait_for(
                lambda: all(stream.saw("projects", k) for k in ("parent", "child", "again"))
            )
    finally:
        await SharedStream("redis", stream_name).cleanup()


def test_publisher_misuse_gets_messages_naming_the_fix(redis_url: str) -> None:
    with pytest.raises(ConfigurationError, match="memory:// has no broker"):
        Publisher("memory://")
    with pytest.raises(ConfigurationError, match="backend URL"):
        Publisher(42)  # type: ignore[arg-type]
    publisher = Publisher(f"{redis_url}?stream={unique_name('refetch_x')}", types=TYPES)
    with pytest.raises(UnknownUpdateType, match=r"'projcts'.*known types: progress, projects"):
        publisher.notify("projcts")
    publisher.close()
    with pytest.raises(ServiceClosed, match="closed"):
        publisher.notify("projects")


def test_an_unreachable_broker_names_its_url() -> None:
    port = free_port()  # nothing listens there
    with Publisher(f"redis://127.0.0.1:{port}/0", timeout=10) as publisher:
        with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{port}"):
            publisher.notify("projects")


async def test_threads_publish_at_once_over_one_connection(broker: SharedStream) -> None:
    publisher = Publisher(broker.url())
    cursors: list[str] = []

    def work() -> None:
        for i in range(10):
            cursors.append(publisher.notify("projects", key=i))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    await asyncio.to_thread(lambda: [t.join() for t in threads])
    publisher.close()
    assert len(set(cursors)) == 40  # every notify got its own position
    assert len({c.split(".")[0] for c in cursors}) == 1  # one stream, one epoch


async def test_async_code_awaits_publish_and_is_warned_off_notify(redis_url: str) -> None:
    stream_name = unique_name("refetch_async")
    backend = f"{redis_url}?stream={stream_name}"
    try:
        async with asgi_server(backend) as (_, url), Stream(url) as stream:
            with Publisher(backend) as publisher:
                cursor = await publisher.publish("compute", key="a")
                await wait_for(lambda: stream.saw("compute", "a"))
                with pytest.warns(RuntimeWarning, match=r"await publisher\.publish"):
                    publisher.notify("compute", key="b")  # works, but blocked this loop
                await wait_for(lambda: stream.saw("compute", "b"))
        assert stream.of("invalidate")[0].id == cursor
    finally:
        await SharedStream("redis", stream_name).cleanup()


def test_notify_on_a_never_started_service_in_sync_code_names_publisher() -> None:
    # The naive Flask version: an UpdateService that no lifespan ever starts.
    service = UpdateService(TYPES)
    with pytest.warns(RuntimeWarning, match=r"never started.*refetch\.Publisher"):
        service.notify("projects", key="1")


async def test_publish_on_a_never_started_service_names_publisher() -> None:
    service = UpdateService(TYPES)
    with pytest.raises(ServiceClosed, match=r"refetch\.Publisher"):
        await service.publish("projects")


async def test_a_broker_that_never_answers_is_a_publish_error_from_both_sides() -> None:
    # A TCP peer that accepts and stays silent: the driver waits, the Publisher's timeout ends
    # it, and both the blocking and the async form say so as PublishError, naming the URL.
    silent: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0?stream=silent"
    publisher = Publisher(url, types=["projects"], timeout=0.5)
    try:
        with pytest.raises(PublishError, match=f"127.0.0.1:{port}.*did not take the update"):
            await publisher.publish("projects")
        with pytest.raises(PublishError, match=f"127.0.0.1:{port}.*did not take the update"):
            await asyncio.to_thread(publisher.notify, "projects")
    finally:
        publisher.close()
        for writer in silent:
            writer.close()
        server.close()
