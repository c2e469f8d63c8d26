from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest
import uvicorn

from refetch import Principal, UpdatesEndpoint, UpdateService
from refetch._types import ASGIApp, Scope
from refetch.client import Frame, listen

from . import services
from .services import free_port

TYPES = ["progress", "projects", "compute", "images", "authentication", "gardener"]


@asynccontextmanager
async def serve(
    app: ASGIApp, port: int | None = None, *, lifespan: Literal["on", "off"] = "off"
) -> AsyncIterator[str]:
    """Run ``app`` on a real uvicorn server on a loopback port, in this event loop.

    ``lifespan="on"`` runs the app's own lifespan (e.g. ``lifespan=service.lifespan``).
    """
    port = port or free_port()
    # The grace period only bounds a test that forgot to close its hub first: an
    # open stream would otherwise keep uvicorn waiting for ever.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan=lifespan,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def token_auth(tokens: dict[str, Principal]) -> Callable[[Scope], Principal | None]:
    """Bearer-token authentication for tests: ``Authorization: Bearer <name>``."""

    def authenticate(scope: Scope) -> Principal | None:
        for name, value in scope["headers"]:
            if name == b"authorization" and value.startswith(b"Bearer "):
                return tokens.get(value[7:].decode())
        return None

    return authenticate


@pytest.fixture
async def service() -> AsyncIterator[UpdateService]:
    async with UpdateService(TYPES, min_interval=0.05, close_on_signals=False) as hub:
        yield hub


@pytest.fixture
async def base_url(service: UpdateService) -> AsyncIterator[str]:
    async with serve(UpdatesEndpoint(service)) as url:
        yield url


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` is true; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


class Recorder:
    """An ASGI ``send`` that keeps what the hub writes, for tests without a socket."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: Any) -> None:
        self.messages.append(dict(message))

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages)


async def never_disconnect() -> dict[str, Any]:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


class Stream:
    """The frames of one open stream, read in the background, with an owner that closes it."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.frames: list[Frame] = []
        self._iterator = listen(url, max_attempts=1, **kwargs)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Stream:
        self._task = asyncio.create_task(self._read())
        await wait_for(lambda: self.frames or (self._task is not None and self._task.done()))
        if self._task.done():
            self._task.result()
        return self

    async def _read(self) -> None:
        async for frame in self._iterator:
            self.frames.append(frame)

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._iterator.aclose()

    @property
    def ended(self) -> bool:
        """The client gave up (the stream ended and reconnecting failed)."""
        return self._task is not None and self._task.done()

    @property
    def cursor(self) -> str | None:
        ids = [f.id for f in self.frames if f.id]
        return ids[-1] if ids else None

    def of(self, event: str) -> list[Frame]:
        return [f for f in self.frames if f.event == event]

    def invalidated(self) -> set[tuple[str, str | None]]:
        return {
            (u.type, key)
            for f in self.of("invalidate")
            for u in f.updates
            for key in (u.keys or (None,))
        }

    def saw(self, type_: str, key: str | None = None) -> bool:
        return (type_, key) in self.invalidated()


# -- real services for the backend tests ----------------------------------------------

# Set by pytest_configure (tests/services.py): the standard local services, or throwaway ones.
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
NATS_URL = "nats://127.0.0.1:4222"


def pytest_configure(config: pytest.Config) -> None:
    global REDIS_URL, POSTGRES_DSN, NATS_URL
    services.start()
    REDIS_URL = os.environ["REFETCH_TEST_REDIS_URL"]
    POSTGRES_DSN = os.environ["REFETCH_TEST_POSTGRES_DSN"]
    NATS_URL = os.environ["REFETCH_TEST_NATS_URL"]


def pytest_unconfigure(config: pytest.Config) -> None:
    services.stop()


def service_port(kind: str) -> int:
    url = {"redis": REDIS_URL, "postgres": POSTGRES_DSN, "nats": NATS_URL}[kind]
    port = urlsplit(url).port
    assert port is not None
    return port


def require_service(kind: str) -> None:
    """Skip loudly when a service is missing; in CI (``CI=true``) fail instead, never skip."""
    port = service_port(kind)
    if services.answers(port):
        return
    message = f"{kind}: " + services.missing.get(kind, f"nothing answers on 127.0.0.1:{port}")
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}: CI must run every backend test")
    pytest.skip(f"SKIPPED, NOT TESTED: {message}")


def unique_name(prefix: str = "t") -> str:
    import uuid

    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_url() -> str:
    require_service("redis")
    return REDIS_URL


@pytest.fixture
def postgres_dsn() -> str:
    require_service("postgres")
    return POSTGRES_DSN


@pytest.fixture
def nats_url() -> str:
    require_service("nats")
    return NATS_URL


class SharedStream:
    """Backends of one test-unique stream on one service: ``make()`` builds one per instance."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        self._memory: Any = None

    def url(self, **options: object) -> str:
        extra = "".join(f"&{k}={v}" for k, v in options.items())
        if self.kind == "redis":
            return f"{REDIS_URL}?stream={self.name}{extra}"
        if self.kind == "postgres":
            return f"{POSTGRES_DSN}?table={self.name}{extra}"
        if self.kind == "nats":
            return f"{NATS_URL}?stream={self.name}{extra}"
        raise ValueError(self.kind)

    def make(self, **options: Any) -> Any:
        from refetch.backends import MemoryBackend, backend_from_url

        if self.kind == "memory":
            if self._memory is None:
                self._memory = MemoryBackend(**options)
            return self._memory
        return backend_from_url(self.url(**options))

    async def cleanup(self) -> None:
        if self.kind == "redis":
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(REDIS_URL)
            await client.delete(self.name, f"{self.name}:epoch")
            await client.aclose()
        elif self.kind == "postgres":
            import asyncpg

            conn = await asyncpg.connect(POSTGRES_DSN)
            await conn.execute(f'DROP TABLE IF EXISTS "{self.name}", "{self.name}_meta"')
            await conn.close()
        elif self.kind == "nats":
            import contextlib

            import nats

            nc = await nats.connect(NATS_URL)
            with contextlib.suppress(Exception):
                await nc.jetstream().delete_stream(self.name)
            await nc.close()


BACKENDS = ["memory", "redis", "postgres", "nats"]


@pytest.fixture(params=BACKENDS)
async def shared(request: pytest.FixtureRequest) -> AsyncIterator[SharedStream]:
    """One fresh shared stream on each backend in turn (memory, Redis, PostgreSQL, NATS)."""
    kind: str = request.param
    if kind != "memory":
        require_service(kind)
    stream = SharedStream(kind, unique_name("refetch_t"))
    try:
        yield stream
    finally:
        await stream.cleanup()


class TcpProxy:
    """A loopback TCP proxy that a test can cut (broker gone) and restore (broker back)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._pipes.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._pipes.difference_update((writer, up_writer))

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for pipe in list(self._pipes):
            pipe.transport.abort()
        self._pipes.clear()

    async def restore(self) -> None:
        await self.start()


@pytest.fixture
async def tcp_proxy() -> AsyncIterator[Callable[[int], Any]]:
    proxies: list[TcpProxy] = []

    async def make(target_port: int) -> TcpProxy:
        proxy = TcpProxy(target_port)
        await proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.cut()
