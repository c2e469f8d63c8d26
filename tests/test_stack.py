"""The stack matrix: the real endpoint behind the middleware apps really use, on a real uvicorn.

Every test opens several streams one after the other, as different users from different
origins, and asserts on the bytes and headers each client receives: each stream carries
exactly its own cookie, request id and CORS answer (nothing leaks from an earlier stream),
frames arrive one by one and uncompressed although the client accepts gzip, and a closed
stream is freed through every layer. Adding a middleware to the matrix is one ``Layer``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response

import refetch
from refetch import Principal, UpdatesEndpoint, UpdateService
from refetch._types import ASGIApp, Message, Receive, Scope, Send

from .conftest import SharedStream, free_port, require_service, serve, unique_name, wait_for

TYPES = ["projects", "compute"]
ORIGIN = "https://app.example"
STREAMS = 4  # sequential streams per test: enough for a leak to pile up


@dataclass(frozen=True)
class Client:
    """Who opens stream ``n`` (from 1): a user of its own, every other one from a foreign origin."""

    n: int

    @property
    def user(self) -> str:
        return f"user{self.n}"

    @property
    def origin(self) -> str:
        return ORIGIN if self.n % 2 else "https://evil.example"

    @property
    def allowed(self) -> bool:
        return self.origin == ORIGIN


Headers = dict[str, list[str]]


@dataclass(frozen=True)
class Layer:
    """One middleware: how to wrap an app in it, and the headers it owes stream ``n``."""

    name: str
    wrap: Callable[[ASGIApp], ASGIApp]
    owes: Callable[[Client], Headers]


# -- the middleware ---------------------------------------------------------------------


class SessionMiddleware(BaseHTTPMiddleware):
    """Refreshes a per-user session cookie and numbers requests, as apps commonly do."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self.numbers = itertools.count(1)

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        number = next(self.numbers)
        response = await call_next(request)
        response.set_cookie("session", request.headers["x-user"], httponly=True)
        response.headers["x-request-id"] = str(number)
        return response


def raw_headers(app: ASGIApp) -> ASGIApp:
    """Plain ASGI middleware that appends to the list in the start message."""
    numbers = itertools.count(1)

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan passes through middleware too
            await app(scope, receive, send)
            return
        number = str(next(numbers)).encode()

        async def add(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"].append((b"x-served-by", b"raw"))
                message["headers"].append((b"x-raw-number", number))
            await send(message)

        await app(scope, receive, add)

    return wrapped


def cors_owes(client: Client) -> Headers:
    # A foreign origin gets no Access-Control-Allow-Origin: not even the one the
    # previous, allowed, stream got.
    return {
        "access-control-allow-origin": [ORIGIN] if client.allowed else [],
        "access-control-allow-credentials": ["true"],
        "vary": ["Origin"],
    }


LAYERS = {
    layer.name: layer
    for layer in [
        Layer("cors", lambda app: CORSMiddleware(app, allow_origins=[ORIGIN], allow_credentials=True), cors_owes),
        Layer("gzip", lambda app: GZipMiddleware(app, minimum_size=0), lambda c: {"vary": []}),
        # Starlette before 0.46 compressed text/event-stream too: the endpoint's own
        # Content-Encoding is what keeps such a GZipMiddleware off the stream.
        Layer("gzip-all-types", lambda app: GZipMiddleware(app, minimum_size=0, exclude_content_types=()), lambda c: {"vary": []}),
        Layer("session", SessionMiddleware, lambda c: {"set-cookie": [f"session={c.user}; HttpOnly; Path=/; SameSite=lax"], "x-request-id": [str(c.n)]}),
        Layer("raw", raw_headers, lambda c: {"x-served-by": ["raw"], "x-raw-number": [str(c.n)]}),
    ]
}  # fmt: skip

STACKS = [
    [],
    ["cors"],
    ["gzip"],
    ["gzip-all-types"],
    ["session"],
    ["raw"],
    ["cors", "gzip-all-types", "session", "raw"],  # outermost first
]


def owed(stack: list[str], client: Client) -> Headers:
    """The headers stream ``client`` must get: the endpoint's own and its layers'.

    On the fast path (``refetch.mount``) too: the handshake goes through every layer.
    """
    headers: Headers = {
        # The endpoint's own, exactly once each: any duplicate is a leak.
        "content-type": ["text/event-stream"],
        "cache-control": ["no-store, no-transform"],
        "content-encoding": ["identity"],
        "x-accel-buffering": ["no"],
    }
    for name in stack:
        for header, values in LAYERS[name].owes(client).items():
            headers[header] = headers.get(header, []) + values
    return headers


def wrapped(app: ASGIApp, stack: list[str]) -> ASGIApp:
    for name in reversed(stack):
        app = LAYERS[name].wrap(app)
    return app


# -- hosts: the endpoint as a bare ASGI app, or inside FastAPI ------------------------------


@asynccontextmanager
async def bare(service: UpdateService, stack: list[str]) -> AsyncIterator[str]:
    async with service, serve(wrapped(UpdatesEndpoint(service), stack)) as url:
        yield url


def fastapi_app(service: UpdateService, stack: list[str]) -> FastAPI:
    app = FastAPI(lifespan=service.lifespan)
    for name in reversed(stack):  # add_middleware puts the last one added outermost
        app.add_middleware(_AsMiddleware, layer=LAYERS[name])
    return app


class _AsMiddleware:
    """A ``Layer`` in the shape ``add_middleware`` wants (a class taking the app first)."""

    def __init__(self, app: ASGIApp, layer: Layer) -> None:
        self.app = layer.wrap(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


@asynccontextmanager
async def fastapi_route(service: UpdateService, stack: list[str]) -> AsyncIterator[str]:
    app = fastapi_app(service, stack)
    app.add_route("/api/updates", UpdatesEndpoint(service))
    async with serve(app, lifespan="on") as url:
        yield f"{url}/api/updates"


@asynccontextmanager
async def fastapi_mount(service: UpdateService, stack: list[str]) -> AsyncIterator[str]:
    app = fastapi_app(service, stack)
    app.mount("/api/updates", UpdatesEndpoint(service))
    async with serve(app, lifespan="on") as url:
        # A mount matches below its path: /api/updates itself answers a 307 to this.
        yield f"{url}/api/updates/"


@asynccontextmanager
async def fastapi_mounted(service: UpdateService, stack: list[str]) -> AsyncIterator[str]:
    """The stream in front of the whole app, its middleware included (``refetch.mount``)."""
    app = fastapi_app(service, stack)
    mounted = refetch.mount(app, "/api/updates", UpdatesEndpoint(service))
    async with serve(mounted, lifespan="on") as url:
        yield f"{url}/api/updates"


HOSTS = {
    "asgi": bare,
    "fastapi-route": fastapi_route,
    "fastapi-mount": fastapi_mount,
    "fastapi-mounted": fastapi_mounted,
}


# -- the matrix ------------------------------------------------------------------------------


def hello(cursor: str) -> bytes:
    return f'retry: 2000\nid: {cursor}\nevent: hello\ndata: {{"cursor":"{cursor}","heartbeat":15.0,"types":["projects","compute"]}}\n\n'.encode()


def invalidate(cursor: str, type_: str, key: str) -> bytes:
    return f'id: {cursor}\nevent: invalidate\ndata: {{"updates":[{{"type":"{type_}","keys":["{key}"]}}]}}\n\n'.encode()


async def next_frame(chunks: AsyncIterator[bytes], expected: bytes) -> bytes:
    """The bytes that arrive until there are as many as ``expected`` has."""
    received = b""
    async with asyncio.timeout(5):
        while len(received) < len(expected):
            received += await anext(chunks)
    return received


@pytest.mark.parametrize("host", list(HOSTS))
@pytest.mark.parametrize("stack", STACKS, ids=lambda s: "+".join(s) or "bare")
async def test_each_stream_gets_its_own_headers_and_frames_one_by_one(
    host: str, stack: list[str]
) -> None:
    service = UpdateService(TYPES, min_interval=0, close_on_signals=False)
    async with HOSTS[host](service, stack) as url, httpx.AsyncClient() as http:
        for n in range(1, STREAMS + 1):
            client = Client(n)
            request_headers = {
                "accept-encoding": "gzip",
                "origin": client.origin,
                "x-user": client.user,
            }
            async with http.stream("GET", url, headers=request_headers) as r:
                assert r.status_code == 200
                for header, values in owed(stack, client).items():
                    assert r.headers.get_list(header) == values, (n, header)
                chunks = r.aiter_raw()  # as sent: not decompressed
                cursor = service.cursor
                assert await next_frame(chunks, hello(cursor)) == hello(cursor)
                for key in ("a", "b"):  # each frame before the next is notified
                    cursor = await service.publish("projects", key=f"{n}{key}")
                    expected = invalidate(cursor, "projects", f"{n}{key}")
                    assert await next_frame(chunks, expected) == expected
            # The disconnect reaches the endpoint through every layer: the stream is freed.
            await wait_for(lambda: service.statistics().connections == 0)


@pytest.mark.parametrize("host", list(HOSTS))
async def test_error_answers_behind_the_full_stack_carry_only_their_own_headers(
    host: str,
) -> None:
    stack = STACKS[-1]
    service = UpdateService(TYPES, close_on_signals=False)
    async with HOSTS[host](service, stack) as url, httpx.AsyncClient() as http:
        for n in range(1, STREAMS + 1):
            client = Client(n)
            r = await http.get(
                f"{url}?types=nope",
                headers={"accept-encoding": "gzip", "origin": client.origin, "x-user": client.user},
            )
            assert r.status_code == 400
            assert r.json()["error"] == "unknown_type"
            expected_origin = [ORIGIN] if client.allowed else []
            assert r.headers.get_list("access-control-allow-origin") == expected_origin
            assert r.headers.get_list("set-cookie") == [
                f"session={client.user}; HttpOnly; Path=/; SameSite=lax"
            ]
            assert r.headers.get_list("x-request-id") == [str(n)]
            assert r.headers.get_list("x-raw-number") == [str(n)]


async def test_mount_keeps_the_app_and_sends_every_request_through_its_stack() -> None:
    """On the fast path the app stays the app: its own API on the returned object, its
    other routes and preflights through every layer, and the stream's handshake too (the
    request ids count it); ``authenticate`` finds ``request.app`` in the scope."""
    stack = STACKS[-1]
    service = UpdateService(TYPES, min_interval=0, close_on_signals=False)
    seen_apps: list[object] = []

    def authenticate(scope: Scope) -> Principal:
        seen_apps.append(Request(scope).app)
        return Principal.of(scope_header(scope, b"x-user"))

    app = fastapi_app(service, stack)
    app.state.marker = "the app"

    @app.get("/api/other")
    async def other() -> dict[str, str]:
        return {"ok": "yes"}

    mounted = refetch.mount(
        app, "/api/updates", UpdatesEndpoint(service, authenticate=authenticate)
    )
    assert mounted is app
    async with serve(mounted, lifespan="on") as url, httpx.AsyncClient() as http:
        for n in range(1, STREAMS + 1):
            client = Client(n)
            headers = {"origin": client.origin, "x-user": client.user}
            r = await http.get(f"{url}/api/other", headers=headers)
            assert r.json() == {"ok": "yes"}
            # Every layer answered it: CORS, the session cookie, both request numbers.
            assert r.headers.get_list("access-control-allow-origin") == (
                [ORIGIN] if client.allowed else []
            )
            assert r.headers.get_list("set-cookie") == [
                f"session={client.user}; HttpOnly; Path=/; SameSite=lax"
            ]
            # Preflights are answered by CORSMiddleware, outermost: the inner layers never count them.
            assert r.headers.get_list("x-request-id") == [str(2 * n - 1)]
            assert r.headers.get_list("x-raw-number") == [str(2 * n - 1)]
            preflight = await http.options(
                f"{url}/api/updates",
                headers={**headers, "access-control-request-method": "GET"},
            )
            if client.allowed:
                assert preflight.status_code == 200
                assert preflight.headers["access-control-allow-origin"] == ORIGIN
            else:
                assert preflight.status_code == 400  # CORSMiddleware: "Disallowed CORS origin"
            async with http.stream("GET", f"{url}/api/updates", headers=headers) as r:
                assert r.status_code == 200
                assert r.headers.get_list("x-request-id") == [str(2 * n)]
                chunks = r.aiter_raw()
                cursor = service.cursor
                assert await next_frame(chunks, hello(cursor)) == hello(cursor)
        assert seen_apps == [app] * STREAMS
        await wait_for(lambda: service.statistics().connections == 0)


def scope_header(scope: Scope, name: bytes) -> str:
    return next(v.decode() for k, v in scope["headers"] if k == name)


# -- multi-process servers: uvicorn --workers, gunicorn with uvicorn workers -----------------

ROOT = Path(__file__).resolve().parent.parent
STARTED = "Application startup complete."
SPLIT = "has no backend but runs in one of 2 worker processes"


class ServerProcess:
    """A real server in a process of its own, its stderr collected line by line."""

    def __init__(self, argv: list[str], backend: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [arg.replace("{port}", str(self.port)) for arg in argv]
        self.env = {k: v for k, v in os.environ.items() if k != "REFETCH_BACKEND"}
        if backend is not None:
            self.env["REFETCH_BACKEND"] = backend
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ServerProcess:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for line in self.process.stderr:
            self.lines.append(line.decode(errors="replace").rstrip())

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def started(self, workers: int) -> None:
        """Wait until every worker ran its lifespan startup (the hub's start())."""
        assert self.process is not None
        try:
            await wait_for(
                lambda: self.count(STARTED) >= workers or self.process.returncode is not None,  # type: ignore[union-attr]
                30,
            )
        except TimeoutError:
            raise AssertionError("\n".join(self.lines)) from None
        assert self.process.returncode is None, "\n".join(self.lines)

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None and self._reader is not None
        if self.process.returncode is None:
            self.process.terminate()
            try:
                async with asyncio.timeout(15):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self._reader


def uvicorn_cmd(*options: str) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "tests.stack_app:app",
        "--host", "127.0.0.1", "--port", "{port}", "--log-level", "info", *options,
    ]  # fmt: skip


def gunicorn_cmd(workers: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "tests.stack_app:app",
        "-k", "uvicorn.workers.UvicornWorker", "-w", str(workers),
        "-b", "127.0.0.1:{port}", "--log-level", "info", "--graceful-timeout", "5",
        # One control socket per user by default: parallel test runs would share it.
        "--no-control-socket",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [uvicorn_cmd("--workers", "2"), gunicorn_cmd(2)],
    ids=["uvicorn --workers 2", "gunicorn -w 2"],
)
async def test_in_memory_hub_in_several_workers_warns_naming_a_backend(argv: list[str]) -> None:
    async with ServerProcess(argv) as server:
        await server.started(workers=2)
        # Each worker logs it in its start(), before its "startup complete".
        assert server.count(SPLIT) == 2, "\n".join(server.lines)
        warning = next(line for line in server.lines if SPLIT in line)
        assert 'backend="redis://' in warning


@pytest.mark.parametrize(
    "options",
    [[], ["--reload", "--reload-dir", "{tmp}"]],
    ids=["uvicorn", "uvicorn --reload"],
)
async def test_one_uvicorn_process_does_not_warn(options: list[str], tmp_path: Path) -> None:
    argv = uvicorn_cmd(*(o.replace("{tmp}", str(tmp_path)) for o in options))
    async with ServerProcess(argv) as server:
        await server.started(workers=1)
        assert server.count(SPLIT) == 0, "\n".join(server.lines)


@asynccontextmanager
async def raw_stream(http: httpx.AsyncClient, url: str) -> AsyncIterator[tuple[str, list[bytes]]]:
    """An open stream: the pid of the worker that holds it, and its bytes so far."""
    received: list[bytes] = []
    async with http.stream("GET", url) as r:
        assert r.status_code == 200

        async def read() -> None:
            async for chunk in r.aiter_raw():
                received.append(chunk)

        reader = asyncio.create_task(read())
        try:
            await wait_for(lambda: b"event: hello" in b"".join(received))
            yield r.headers["x-worker-pid"], received
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def test_gunicorn_workers_on_redis_deliver_a_notify_to_streams_on_every_worker() -> None:
    require_service("redis")
    shared = SharedStream("redis", unique_name("refetch_stack"))
    try:
        async with ServerProcess(gunicorn_cmd(2), backend=shared.url()) as server:
            await server.started(workers=2)
            assert server.count(SPLIT) == 0
            async with AsyncExitStack() as streams, httpx.AsyncClient() as http:
                opened: list[tuple[str, list[bytes]]] = []
                # The kernel hands each connection to whichever worker accepts first.
                while len({pid for pid, _ in opened}) < 2:
                    assert len(opened) < 60, "every stream landed on one worker"
                    opened.append(
                        await streams.enter_async_context(
                            raw_stream(http, f"{server.url}/api/updates")
                        )
                    )
                r = await http.post(
                    f"{server.url}/notify", params={"type": "projects", "key": "42"}
                )
                cursor = r.json()["cursor"]
                frame = f'id: {cursor}\nevent: invalidate\ndata: {{"updates":[{{"type":"projects","keys":["42"]}}]}}\n\n'.encode()
                await wait_for(lambda: all(frame in b"".join(got) for _, got in opened), 10)
                assert len({pid for pid, _ in opened}) == 2
    finally:
        await shared.cleanup()
