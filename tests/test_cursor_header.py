"""Refetch-Cursor on API responses, end to end: real uvicorn, real HTTP, a real resume."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from refetch import CursorHeaderMiddleware, UpdatesEndpoint, UpdateService

from .conftest import Stream, serve, wait_for


@dataclass
class App:
    url: str
    projects: list[str] = field(default_factory=list)
    reading: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def app(service: UpdateService) -> AsyncIterator[App]:
    state = App(url="")

    async def list_projects(request: Request) -> JSONResponse:
        if request.query_params.get("slow"):
            state.reading.set()
            await state.release.wait()  # a change is committed while this handler runs
        return JSONResponse(list(state.projects))

    async def create_project(request: Request) -> JSONResponse:
        state.projects.append(str(len(state.projects) + 1))
        await service.publish("projects", key=state.projects[-1])
        return JSONResponse({"id": state.projects[-1]}, status_code=201)

    async def bad(request: Request) -> JSONResponse:
        return JSONResponse({"error": "nope", "detail": "always 400"}, status_code=400)

    starlette = Starlette(
        routes=[
            Route("/api/updates", UpdatesEndpoint(service)),
            Route("/api/projects", list_projects),
            Route("/api/projects", create_project, methods=["POST"]),
            Route("/api/bad", bad),
        ]
    )
    async with serve(CursorHeaderMiddleware(starlette, service)) as url:
        state.url = url
        yield state


async def test_every_response_carries_the_cursor_it_was_read_at(
    app: App, service: UpdateService
) -> None:
    async with httpx.AsyncClient() as http:
        first = await http.get(f"{app.url}/api/projects")
        created = await http.post(f"{app.url}/api/projects")
        after = await http.get(f"{app.url}/api/projects")
        error = await http.get(f"{app.url}/api/bad")
    assert first.headers["refetch-cursor"] != after.headers["refetch-cursor"]
    assert created.status_code == 201
    assert after.json() == ["1"]
    assert after.headers["refetch-cursor"] == service.cursor
    assert error.status_code == 400
    assert error.headers["refetch-cursor"] == service.cursor


async def test_the_update_stream_itself_is_not_stamped(app: App) -> None:
    async with httpx.AsyncClient() as http, http.stream("GET", f"{app.url}/api/updates") as r:
        assert r.headers["content-type"] == "text/event-stream"
        assert "refetch-cursor" not in r.headers


async def test_the_streams_own_refusals_are_not_stamped_either(app: App) -> None:
    # A cursor says "the data of this answer was read at": a refusal carries no data.
    async with httpx.AsyncClient() as http:
        refused = await http.get(f"{app.url}/api/updates", params={"types": "nope"})
        not_get = await http.post(f"{app.url}/api/updates")
    assert refused.status_code == 400
    assert not_get.status_code == 405
    assert "refetch-cursor" not in refused.headers
    assert "refetch-cursor" not in not_get.headers


async def test_a_change_during_the_read_is_replayed_from_the_responses_cursor(
    app: App, service: UpdateService
) -> None:
    """The cursor is taken before the handler reads, so a stream opened from it hears the change."""
    async with httpx.AsyncClient() as http:
        slow = asyncio.create_task(http.get(f"{app.url}/api/projects?slow=1"))
        await wait_for(app.reading.is_set)
        created = await http.post(f"{app.url}/api/projects")
        app.release.set()
        response = await slow
    read_at = response.headers["refetch-cursor"]
    assert created.status_code == 201
    assert read_at != service.cursor
    async with Stream(f"{app.url}/api/updates", last_event_id=read_at) as stream:
        await wait_for(lambda: stream.saw("projects", "1"))
    assert stream.frames[0].event == "hello"
    assert stream.frames[0].id is None  # resumed: the replay, not a resync
    assert stream.of("resync") == []


async def test_nothing_changed_since_the_read_means_no_replay(
    app: App, service: UpdateService
) -> None:
    async with httpx.AsyncClient() as http:
        read_at = (await http.get(f"{app.url}/api/projects")).headers["refetch-cursor"]
    async with Stream(f"{app.url}/api/updates", last_event_id=read_at) as stream:
        await service.publish("compute")  # something after the resume, so the test can wait on it
        await wait_for(lambda: stream.saw("compute"))
    assert [f.event for f in stream.frames] == ["hello", "invalidate"]
    assert not stream.saw("projects")


async def test_when_decides_per_response_after_the_app_ran(service: UpdateService) -> None:
    """`when(scope)` sees what the app left in scope["state"] (e.g. "signed in")."""

    async def private(request: Request) -> JSONResponse:
        if request.headers.get("authorization") == "Bearer ok":
            request.state.signed_in = True
            return JSONResponse(["mine"])
        return JSONResponse({"detail": "not signed in"}, status_code=401)

    starlette = Starlette(routes=[Route("/api/private", private)])
    guarded = CursorHeaderMiddleware(
        starlette, service, when=lambda scope: bool(scope.get("state", {}).get("signed_in"))
    )
    async with serve(guarded) as url, httpx.AsyncClient() as http:
        anonymous = await http.get(f"{url}/api/private")
        signed_in = await http.get(f"{url}/api/private", headers={"authorization": "Bearer ok"})
    assert anonymous.status_code == 401 and "refetch-cursor" not in anonymous.headers
    assert signed_in.headers["refetch-cursor"] == service.cursor
