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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response

from refetch import UpdatesEndpoint, UpdateService
from refetch._types import ASGIApp, Message, Receive, Scope, Send

from .conftest import serve, wait_for

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


HOSTS = {"asgi": bare, "fastapi-route": fastapi_route, "fastapi-mount": fastapi_mount}


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
            assert r.headers.get_list("set-cookie") == [
                f"session={client.user}; HttpOnly; Path=/; SameSite=lax"
            ]
            assert r.headers.get_list("x-request-id") == [str(n)]
            assert r.headers.get_list("x-raw-number") == [str(n)]
            expected_origin = [ORIGIN] if client.allowed else []
            assert r.headers.get_list("access-control-allow-origin") == expected_origin
