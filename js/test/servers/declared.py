"""A FastAPI app whose routes declare what they read and change (refetch.routes), for
js/test/orval.test.ts: its OpenAPI document is the input of the committed orval client and
schema tags in js/test/orval/ (`cd js/test/orval && npm run generate`).

PORT=8000 .venv/bin/python js/test/servers/declared.py     # serve
.venv/bin/python js/test/servers/declared.py --openapi     # print the OpenAPI document
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel

from refetch import CursorHeaderMiddleware, UpdatesEndpoint, UpdateService
from refetch.routes import DeclaredRoute, changes, reads, use_service

updates = UpdateService(["projects", "tasks", "images"], close_on_signals=False)


class Project(BaseModel):
    id: int
    name: str


class Task(BaseModel):
    id: int
    title: str


class Image(BaseModel):
    name: str


class Rename(BaseModel):
    name: str


PROJECTS = {1: Project(id=1, name="apollo"), 2: Project(id=2, name="gemini")}
TASKS = {1: [Task(id=1, title="launch")], 2: [Task(id=2, title="dock")]}
IMAGES = [Image(name="debian")]

router = APIRouter(prefix="/api", route_class=DeclaredRoute)


@router.get("/projects", operation_id="listProjects", dependencies=[reads("projects")])
async def list_projects() -> list[Project]:
    return list(PROJECTS.values())


@router.get(
    "/projects/{project_id}",
    operation_id="getProject",
    dependencies=[reads("projects", key="project_id")],
)
async def get_project(project_id: int) -> Project:
    if project_id not in PROJECTS:
        raise HTTPException(404, "no such project")
    return PROJECTS[project_id]


@router.patch(
    "/projects/{project_id}",
    operation_id="renameProject",
    dependencies=[changes("projects", key="project_id")],
)
async def rename_project(project_id: int, body: Rename) -> Project:
    project = await get_project(project_id)
    project.name = body.name
    return project


@router.get(
    "/projects/{project_id}/tasks",
    operation_id="listTasks",
    dependencies=[reads("tasks", key="project_id")],
)
async def list_tasks(project_id: int) -> list[Task]:
    return TASKS.get(project_id, [])


@router.post(
    "/projects/{project_id}/tasks",
    operation_id="addTask",
    status_code=201,
    dependencies=[changes("tasks", key="project_id")],
)
async def add_task(project_id: int, body: Rename) -> Task:
    task = Task(id=sum(map(len, TASKS.values())) + 1, title=body.name)
    TASKS.setdefault(project_id, []).append(task)
    return task


@router.get("/images", operation_id="listImages", dependencies=[reads("images")])
async def list_images() -> list[Image]:
    return IMAGES


@router.post("/images", operation_id="addImage", status_code=201, dependencies=[changes("images")])
async def add_image(body: Image) -> Image:
    IMAGES.append(body)
    return body


@router.get("/progress", operation_id="getProgress")
async def progress() -> dict[str, int]:
    return {"value": 0}  # what test/python-server.ts polls until the server is up


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with updates:
        yield


app = FastAPI(lifespan=lifespan)
use_service(app, updates)
app.include_router(router)
app.add_route("/api/updates", UpdatesEndpoint(updates))
app.add_middleware(CursorHeaderMiddleware, service=updates)
# The React test runs in happy-dom, a browser on another origin.
app.add_middleware(
    CORSMiddleware,
    allow_origins=["*"],
    allow_methods=["*"],
    allow_headers=["*"],
    expose_headers=["Refetch-Cursor"],
)

if __name__ == "__main__":
    if sys.argv[1:] == ["--openapi"]:
        json.dump(app.openapi(), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        uvicorn.run(
            app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), log_level="warning"
        )
