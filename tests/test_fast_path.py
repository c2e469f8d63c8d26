"""``refetch.mount``: the handshake through the app's own stack, the frames straight to uvicorn.

Real uvicorn, real Starlette middleware (``SessionMiddleware``, ``AuthenticationMiddleware``,
``CORSMiddleware``): a signed-in user's stream is authenticated by what those layers left in the
scope, refusals carry what the app's layers add (CORS from its one configuration), and a layer
inside the app sees the stream's start and end but none of its frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    SimpleUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import refetch
from refetch import Principal, UpdatesEndpoint, UpdateService
from refetch._types import ASGIApp, Message, Receive, Scope, Send
from refetch.fastapi import UpdatesResponse, UpdatesStream

from .conftest import serve, wait_for

TYPES = ["projects", "compute"]
ORIGIN = "https://app.example"


async def login(request: Request) -> Response:
    request.session["user"] = request.query_params["user"]
    return JSONResponse({"signed_in": request.session["user"]})


def from_session(scope: Scope) -> Principal | None:
    """The app's own session, read as any handler would: no cookie decoded by hand."""
    user = Request(scope).session.get("user")
    return None if user is None else Principal.of(user, scopes=[f"user:{user}"])


class SessionUsers(AuthenticationBackend):
    """The app's one user loader, for ``AuthenticationMiddleware``."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        user = conn.session.get("user")
        return None if user is None else (AuthCredentials(["authenticated"]), SimpleUser(user))


def from_user(scope: Scope) -> Principal | None:
    """``scope["user"]`` as ``AuthenticationMiddleware`` left it."""
    user: BaseUser = scope["user"]
    if not user.is_authenticated:
        return None
    return Principal.of(user.display_name, scopes=[f"user:{user.display_name}"])


def session_app(service: UpdateService, auth: str) -> Starlette:
    middleware = [
        Middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_credentials=True),
        Middleware(SessionMiddleware, secret_key="test-secret"),
    ]
    authenticate = from_session
    if auth == "authentication-middleware":
        middleware.append(Middleware(AuthenticationMiddleware, backend=SessionUsers()))
        authenticate = from_user
    app = Starlette(
        routes=[Route("/login", login, methods=["POST"])],
        middleware=middleware,
        lifespan=service.lifespan,
    )
    return refetch.mount(app, "/api/updates", UpdatesEndpoint(service, authenticate=authenticate))


@asynccontextmanager
async def running(app: ASGIApp) -> AsyncIterator[str]:
    async with serve(app, lifespan="on") as url:
        yield url


@pytest.mark.parametrize("auth", ["session-middleware", "authentication-middleware"])
async def test_signed_in_users_get_their_stream_signed_out_ones_a_401(auth: str) -> None:
    service = UpdateService(TYPES, min_interval=0, close_on_signals=False)
    app = session_app(service, auth)
    async with running(app) as url, httpx.AsyncClient(base_url=url) as http:
        signed_out = await http.get("/api/updates", headers={"origin": ORIGIN})
        assert signed_out.status_code == 401
        assert signed_out.json()["error"] == "unauthorized"
        # The app's one CORS configuration answered the refusal too.
        assert signed_out.headers["access-control-allow-origin"] == ORIGIN
        assert signed_out.headers["access-control-allow-credentials"] == "true"

        assert (await http.post("/login", params={"user": "alice"})).status_code == 200
        async with http.stream("GET", "/api/updates", headers={"origin": ORIGIN}) as r:
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == ORIGIN
            received = b""
            chunks = r.aiter_raw()
            async with asyncio.timeout(5):
                while b"event: hello" not in received:
                    received += await anext(chunks)
                service.notify("projects", key="for-bob", audience={"user:bob"})
                cursor = await service.publish("projects", key="7", audience={"user:alice"})
                while f"id: {cursor}\n".encode() not in received:
                    received += await anext(chunks)
            assert b'"keys":["7"]' in received
            assert b"for-bob" not in received
        await wait_for(lambda: service.statistics().connections == 0)


async def test_a_post_on_the_stream_path_gets_the_endpoints_json_405() -> None:
    service = UpdateService(TYPES, close_on_signals=False)
    app = session_app(service, "session-middleware")
    async with running(app) as url, httpx.AsyncClient(base_url=url) as http:
        r = await http.post("/api/updates", headers={"origin": ORIGIN})
        assert r.status_code == 405
        assert r.json()["error"] == "method_not_allowed"
        assert r.headers["allow"] == "GET"
        assert r.headers["access-control-allow-origin"] == ORIGIN


class Witness:
    """Plain ASGI middleware inside the app: records what of each response passes it."""

    def __init__(self, app: ASGIApp, seen: list[Message]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def noted(message: Message) -> None:
            self.seen.append(message)
            await send(message)

        await self.app(scope, receive, noted)


class Passing(BaseHTTPMiddleware):
    """``BaseHTTPMiddleware``: it relays the start from a task of its own."""

    async def dispatch(self, request: Request, call_next: object) -> Response:
        response: Response = await call_next(request)  # type: ignore[operator]
        response.headers["x-request-id"] = "42"
        return response


@pytest.mark.parametrize("outer", ["plain", "base-http", "gzip"])
async def test_frames_skip_the_stack_once_its_start_is_on_the_wire(outer: str) -> None:
    service = UpdateService(TYPES, min_interval=0, close_on_signals=False)
    seen: list[Message] = []
    middleware = [Middleware(Witness, seen=seen)]
    if outer == "base-http":
        middleware.insert(0, Middleware(Passing))
    elif outer == "gzip":
        middleware.insert(0, Middleware(GZipMiddleware, minimum_size=0))
    app = refetch.mount(
        Starlette(middleware=middleware, lifespan=service.lifespan),
        "/api/updates",
        UpdatesEndpoint(service),
    )
    async with running(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream("GET", "/api/updates", headers={"accept-encoding": "gzip"}) as r:
            assert r.status_code == 200
            if outer == "base-http":
                assert r.headers["x-request-id"] == "42"
            received = b""
            chunks = r.aiter_raw()
            async with asyncio.timeout(5):
                for key in ("a", "b", "c"):
                    cursor = await service.publish("projects", key=key)
                    while f"id: {cursor}\n".encode() not in received:
                        received += await anext(chunks)
        await wait_for(lambda: service.statistics().connections == 0)
    assert received.count(b"event: invalidate") == 3
    # The layer saw the stream's start go out, and not one of its frames.
    assert [m["status"] for m in seen if m["type"] == "http.response.start"] == [200]
    assert [m["body"] for m in seen if m["type"] == "http.response.body" and m["body"]] == []


def test_mount_refuses_what_it_cannot_serve() -> None:
    service = UpdateService(TYPES, close_on_signals=False)
    endpoint = UpdatesEndpoint(service)
    with pytest.raises(refetch.ConfigurationError, match="'/api/updates'"):
        refetch.mount(Starlette(), "api/updates", endpoint)
    with pytest.raises(refetch.ConfigurationError, match="not end with one"):
        refetch.mount(Starlette(), "/api/updates/", endpoint)
    with pytest.raises(refetch.ConfigurationError, match="CORSMiddleware"):
        refetch.mount(Starlette(), "/api/updates", endpoint, allow_origins=[ORIGIN])
    with pytest.raises(refetch.ConfigurationError, match="StreamMount"):
        refetch.mount(endpoint, "/api/updates")


async def test_the_401_names_only_the_credentials_the_app_takes() -> None:
    service = UpdateService(TYPES, close_on_signals=False)
    cookie_only = UpdatesEndpoint(service, authenticate=lambda scope: None)
    with_tokens = UpdatesEndpoint(service, authenticate=lambda scope: None, challenge="Bearer")
    app = Starlette(
        routes=[Route("/cookie", cookie_only), Route("/token", with_tokens)],
        lifespan=service.lifespan,
    )
    async with running(app) as url, httpx.AsyncClient(base_url=url) as http:
        cookie = await http.get("/cookie")
        token = await http.get("/token")
    assert cookie.status_code == token.status_code == 401
    assert "www-authenticate" not in cookie.headers
    assert "bearer" not in cookie.json()["detail"].lower()
    assert token.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in token.json()["detail"]


# -- the FastAPI form: the stream as a path operation, authenticated by the app's dependencies


def current_user(request: Request) -> str:
    """The app's one user loader, used by every route (a dependency)."""
    user: str | None = request.session.get("user")
    if user is None:
        raise HTTPException(401, "not signed in")
    return user


def fastapi_stream_app(service: UpdateService, seen: list[Message]) -> FastAPI:
    app = FastAPI(lifespan=service.lifespan)
    app.add_middleware(Witness, seen=seen)
    app.add_middleware(SessionMiddleware, secret_key="test-secret")
    app.add_middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_credentials=True)
    stream = UpdatesStream(service)

    @app.post("/login")
    async def login(request: Request, user: str) -> dict[str, str]:
        request.session["user"] = user
        return {"signed_in": user}

    @app.get("/api/updates", **stream.operation)
    async def updates_stream(user: Annotated[str, Depends(current_user)]) -> UpdatesResponse:
        return stream.open(Principal.of(user, scopes=[f"user:{user}"]))

    return refetch.mount(app, "/api/updates")


async def test_the_fastapi_form_authenticates_with_the_apps_dependencies() -> None:
    service = UpdateService(TYPES, min_interval=0, close_on_signals=False)
    seen: list[Message] = []
    app = fastapi_stream_app(service, seen)
    async with running(app) as url, httpx.AsyncClient(base_url=url) as http:
        signed_out = await http.get("/api/updates", headers={"origin": ORIGIN})
        assert signed_out.status_code == 401
        assert signed_out.json() == {"detail": "not signed in"}  # the app's own answer
        assert signed_out.headers["access-control-allow-origin"] == ORIGIN

        await http.post("/login", params={"user": "alice"})
        unknown = await http.get("/api/updates", params={"types": "nope"})
        assert unknown.status_code == 400
        assert unknown.json()["error"] == "unknown_type"
        seen.clear()
        async with http.stream("GET", "/api/updates", headers={"origin": ORIGIN}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "text/event-stream"
            assert r.headers["access-control-allow-origin"] == ORIGIN
            received = b""
            chunks = r.aiter_raw()
            async with asyncio.timeout(5):
                while b"event: hello" not in received:
                    received += await anext(chunks)
                service.notify("projects", key="for-bob", audience={"user:bob"})
                cursor = await service.publish("projects", key="7", audience={"user:alice"})
                while f"id: {cursor}\n".encode() not in received:
                    received += await anext(chunks)
            assert b'"keys":["7"]' in received
            assert b"for-bob" not in received
        await wait_for(lambda: service.statistics().connections == 0)
    # On the fast path: the app's layers saw the start, not the frames.
    assert [m["body"] for m in seen if m["type"] == "http.response.body" and m["body"]] == []


def test_the_fastapi_form_is_in_openapi_with_its_events_and_refusals() -> None:
    service = UpdateService(TYPES, close_on_signals=False)
    schema = fastapi_stream_app(service, []).openapi()
    operation = schema["paths"]["/api/updates"]["get"]
    stream = operation["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    assert stream["text/event-stream"]["schema"] == {"type": "string"}
    item = stream["text/event-stream"]["itemSchema"]
    assert item["properties"]["event"]["enum"] == [
        "hello",
        "invalidate",
        "resync",
        "ping",
        "reconnect",
    ]
    by_event = {e["properties"]["event"]["const"]: e for e in item["oneOf"]}
    hello_types = by_event["hello"]["properties"]["data"]["contentSchema"]["properties"]["types"]
    assert hello_types["items"] == {"title": "UpdateType", "type": "string", "enum": TYPES}
    assert {"400", "401", "403", "503"} <= set(operation["responses"])
    assert operation["responses"]["400"]["content"]["application/json"]["schema"]["properties"][
        "error"
    ]["enum"] == [
        "unknown_type",
        "malformed_types",
        "malformed_watch",
        "too_many_watched_keys",
        "cursor_too_long",
        "query_too_long",
    ]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert list(parameters) == ["types", "watch", "lastEventId", "Last-Event-ID"]
    assert parameters["watch"]["explode"] is True  # repeated: ?watch=a:1&watch=a:2


class HoldsStartUntilContent:
    """A layer that sends the start only with the first body that has bytes in it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        held: list[Message] = []

        async def holding(message: Message) -> None:
            if message["type"] == "http.response.start":
                held.append(message)
                return
            if held and (message.get("body") or not message.get("more_body", False)):
                await send(held.pop())
            if not held:
                await send(message)

        await self.app(scope, receive, holding)


async def test_a_layer_that_holds_the_start_gets_every_frame_through_the_stack() -> None:
    """Frames never overtake the start: past the wait, they go through the stack as routed."""
    service = UpdateService(TYPES, min_interval=0, close_on_signals=False)
    seen: list[Message] = []
    app = refetch.mount(
        Starlette(
            middleware=[Middleware(HoldsStartUntilContent), Middleware(Witness, seen=seen)],
            lifespan=service.lifespan,
        ),
        "/api/updates",
        UpdatesEndpoint(service),
    )
    async with running(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream("GET", "/api/updates") as r:
            assert r.status_code == 200
            received = b""
            chunks = r.aiter_raw()
            async with asyncio.timeout(5):
                while b"event: hello" not in received:
                    received += await anext(chunks)
                cursor = await service.publish("projects", key="k")
                while f"id: {cursor}\n".encode() not in received:
                    received += await anext(chunks)
        await wait_for(lambda: service.statistics().connections == 0)
    assert received.startswith(b"retry: 2000\nid: ")
    assert sum(b"event: invalidate" in m.get("body", b"") for m in seen) == 1
