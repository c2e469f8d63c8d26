"""The acting-tab app: a FastAPI app with declared routes, served to a React page in Chromium.

``GET /api/projects`` reads ``projects``; ``PATCH /api/projects/{project_id}`` renames one and
declares ``changes("projects", key="project_id")``, so refetch notifies after it answered 2xx.
``?slow=1`` on the PATCH holds its response for ``SLOW_RESPONSE`` seconds after the notify, so
the stream's frame reaches the page well before the mutation's answer (the other order of the
race). ``POST /api/sentinel`` notifies ``sentinel``: a test waits for the page to refetch it to
know that every frame before it was handled. ``POST /api/arm`` makes the next read of
the projects change one after reading and holds the next update stream until then (the page load
of the architecture note's layout). ``/`` is the page, ``/app.js`` the bundle named by
``ACTING_BUNDLE``.

Run: ``ACTING_BUNDLE=... python -m tests.e2e.acting_app`` (HOST, PORT).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel

from refetch import CursorHeaderMiddleware, UpdatesEndpoint, UpdateService
from refetch._types import ASGIApp, Message, Receive, Scope, Send
from refetch.routes import DeclaredRoute, changes, changes_nothing, reads, use_service

SLOW_RESPONSE = 0.3

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>acting tab</title></head>
<body><div id="root"></div><script type="module" src="/app.js"></script></body></html>
"""


class Rename(BaseModel):
    name: str


class Project(BaseModel):
    id: int
    name: str


def build(bundle: Path) -> ASGIApp:
    updates = UpdateService(types=["projects", "sentinel"])
    projects = {1: "one", 2: "two"}
    sentinel = [0]
    router = APIRouter(route_class=DeclaredRoute)

    armed = asyncio.Event()  # the next read of the projects is followed by a change
    arms = [0]
    changed = asyncio.Event()

    @router.get("/api/projects", dependencies=[reads("projects")])
    async def list_projects() -> list[Project]:
        listed = [Project(id=i, name=n) for i, n in sorted(projects.items())]
        if armed.is_set():
            armed.clear()
            projects[2] = f"changed after read {arms[0]}"
            updates.notify("projects", key="2")
            await updates.flush()
            changed.set()
        return listed

    @router.post("/api/arm", dependencies=[changes_nothing()])
    async def arm() -> str:
        """The next read of the projects is followed by a change, and the next update stream
        is answered only after it: the change lands between the page's first read and its hello.
        Returns the name project 2 gets."""
        arms[0] += 1
        changed.clear()
        armed.set()
        return f"changed after read {arms[0]}"

    @router.patch(
        "/api/projects/{project_id}", dependencies=[changes("projects", key="project_id")]
    )
    async def rename(project_id: int, body: Rename) -> Project:
        projects[project_id] = body.name
        return Project(id=project_id, name=body.name)

    @router.get("/api/sentinel", dependencies=[reads("sentinel")])
    async def read_sentinel() -> int:
        return sentinel[0]

    @router.post("/api/sentinel", dependencies=[changes("sentinel")])
    async def bump_sentinel() -> int:
        sentinel[0] += 1
        return sentinel[0]

    app = FastAPI(lifespan=updates.lifespan)
    app.include_router(router)
    use_service(app, updates)
    app.mount("/api/updates", AfterChange(UpdatesEndpoint(updates), armed, changed))

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.get("/app.js")
    async def script() -> FileResponse:
        return FileResponse(bundle, media_type="text/javascript")

    return CursorHeaderMiddleware(SlowAnswers(app), updates)


class AfterChange:
    """While armed, holds a stream request until the armed change was made."""

    def __init__(self, app: ASGIApp, armed: asyncio.Event, changed: asyncio.Event) -> None:
        self.app, self.armed, self.changed = app, armed, changed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.armed.is_set():
            await self.changed.wait()
        await self.app(scope, receive, send)


class SlowAnswers:
    """Holds the response of a request with ``slow=1`` after the route ran (and notified)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slow = scope["type"] == "http" and b"slow=1" in scope.get("query_string", b"")

        async def held(message: Message) -> None:
            if slow and message["type"] == "http.response.start":
                await asyncio.sleep(SLOW_RESPONSE)
            await send(message)

        await self.app(scope, receive, held)


if __name__ == "__main__":
    uvicorn.run(
        build(Path(os.environ["ACTING_BUNDLE"])),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        log_level="warning",
    )
