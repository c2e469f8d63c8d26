"""The smallest refetch app: a Starlette server that notifies on a timer.

.venv/bin/python -m examples.timer        # then: curl -N http://127.0.0.1:8000/api/updates
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from refetch import CursorHeaderMiddleware, UpdatesEndpoint, UpdateService

updates = UpdateService(types=["progress", "projects", "compute"])
progress = {"value": 0}


async def tick() -> None:
    while True:
        await asyncio.sleep(2)
        progress["value"] = (progress["value"] + 5) % 105
        updates.notify("progress")


async def get_progress(request: Request) -> JSONResponse:
    return JSONResponse(progress)


async def list_projects(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.projects)


async def create_project(request: Request) -> JSONResponse:
    project_id = str(len(request.app.state.projects) + 1)
    request.app.state.projects.append(project_id)
    updates.notify("projects", key=project_id)  # after the "commit"
    return JSONResponse({"id": project_id}, status_code=201)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.projects = []
    async with updates, asyncio.TaskGroup() as tasks:
        ticker = tasks.create_task(tick())
        yield
        ticker.cancel()


app = Starlette(
    routes=[
        Route("/api/updates", UpdatesEndpoint(updates)),
        Route("/api/progress", get_progress),
        Route("/api/projects", list_projects),
        Route("/api/projects", create_project, methods=["POST"]),
    ],
    lifespan=lifespan,
)
# Every API response says which cursor its data was read at (docs/protocol.md).
app.add_middleware(CursorHeaderMiddleware, service=updates)

if __name__ == "__main__":
    uvicorn.run(
        app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000"))
    )
