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
from refetch.backends import Entry, MemoryBackend

from .conftest import TYPES, Stream, serve, unique_name, wait_for


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


# -- Refetch-Notified: the answer of a request that notified ------------------------------------


def notifying_app(service: UpdateService, projects: list[str]) -> Starlette:
    async def create_with_notify(request: Request) -> JSONResponse:
        projects.append(str(len(projects) + 1))
        service.notify("projects", key=projects[-1])  # not awaited: numbered after the handler
        return JSONResponse({"id": projects[-1]}, status_code=201)

    def create_in_a_thread(request: Request) -> JSONResponse:  # Starlette runs it in a thread
        projects.append(str(len(projects) + 1))
        service.notify("projects", key=projects[-1])
        return JSONResponse({"id": projects[-1]}, status_code=201)

    async def list_projects(request: Request) -> JSONResponse:
        return JSONResponse(list(projects))

    return Starlette(
        routes=[
            Route("/api/updates", UpdatesEndpoint(service)),
            Route("/api/projects", list_projects),
            Route("/api/projects", create_with_notify, methods=["POST"]),
            Route("/api/threaded", create_in_a_thread, methods=["POST"]),
        ]
    )


async def test_a_request_that_notified_names_a_cursor_at_or_after_its_update(
    service: UpdateService,
) -> None:
    """Its own change is numbered before the answer, and the header names a cursor at or after
    it: a stream resumed from the header hears nothing of it (the read after the answer saw it),
    one resumed from the answer's Refetch-Cursor (the read cursor) hears it."""
    projects: list[str] = []
    app = CursorHeaderMiddleware(notifying_app(service, projects), service)
    async with serve(app) as url, httpx.AsyncClient() as http:
        created = await http.post(f"{url}/api/projects")
        threaded = await http.post(f"{url}/api/threaded")
        listed = await http.get(f"{url}/api/projects")
        async with Stream(
            f"{url}/api/updates", last_event_id=created.headers["refetch-cursor"]
        ) as before:
            await wait_for(lambda: before.saw("projects", "1"))
        async with Stream(
            f"{url}/api/updates", last_event_id=created.headers["refetch-notified"]
        ) as after:
            await service.publish("compute")  # something after the resume, to wait on
            await wait_for(lambda: after.saw("compute"))
    assert created.status_code == threaded.status_code == 201
    assert not after.saw("projects", "1")
    assert threaded.headers["refetch-notified"] != created.headers["refetch-notified"]
    # a request that notified nothing says nothing of the kind
    assert "refetch-notified" not in listed.headers
    assert listed.headers["refetch-cursor"] == threaded.headers["refetch-notified"]


async def test_with_a_broker_the_answer_waits_until_the_broker_numbered_the_update(
    redis_url: str,
) -> None:
    import redis.asyncio

    from refetch.backends import backend_from_url

    stream = unique_name("notified")
    url_of_stream = f"{redis_url}?stream={stream}"
    async with UpdateService(
        TYPES, backend=backend_from_url(url_of_stream), close_on_signals=False
    ) as hub:
        projects: list[str] = []
        async with serve(CursorHeaderMiddleware(notifying_app(hub, projects), hub)) as url:
            async with httpx.AsyncClient() as http:
                created = await http.post(f"{url}/api/projects")
            notified_at = created.headers["refetch-notified"]
            async with Stream(f"{url}/api/updates", last_event_id=notified_at) as after:
                await hub.publish("compute")
                await wait_for(lambda: after.saw("compute"))
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.delete(stream, f"{stream}:epoch")
    await client.aclose()
    assert created.headers["refetch-cursor"] != notified_at
    assert not after.saw("projects", "1")


class DeafMemoryBackend(MemoryBackend):
    """Fault injection: takes every publish, but this instance's listener cannot read back."""

    async def read(self, after: int) -> AsyncIterator[list[Entry]]:
        raise ConnectionError("the listener is cut off")
        yield []  # pragma: no cover - makes this an async generator


async def test_no_refetch_notified_while_the_hub_cannot_hear_its_broker() -> None:
    """Its own updates then reach its streams before they are numbered, in frames whose id does
    not bound them: a client must not match those against a cursor (docs/protocol.md)."""
    async with UpdateService(TYPES, backend=DeafMemoryBackend(), close_on_signals=False) as hub:
        await wait_for(lambda: hub.statistics().listener_down is not None)
        projects: list[str] = []
        async with serve(CursorHeaderMiddleware(notifying_app(hub, projects), hub)) as url:
            async with httpx.AsyncClient() as http:
                created = await http.post(f"{url}/api/projects")
    assert created.status_code == 201
    assert "refetch-cursor" in created.headers
    assert "refetch-notified" not in created.headers
