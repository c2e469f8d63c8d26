"""Litestar with refetch: the endpoint is one ``asgi()`` route, the hub one lifespan entry.

    .venv/bin/uvicorn examples.litestar_app:app
    # several workers share one stream through a backend (docs/operations.md):
    REFETCH_BACKEND_URL=redis://127.0.0.1:6379/0 .venv/bin/gunicorn examples.litestar_app:app \
        --worker-class uvicorn_worker.UvicornWorker --workers 2
"""

from __future__ import annotations

import itertools
import os

from litestar import Litestar, get, post
from litestar.exceptions import ValidationException
from litestar.handlers import asgi

from refetch import UpdatesEndpoint, UpdateService

updates = UpdateService(
    types=["projects", "compute"],
    backend=os.environ.get("REFETCH_BACKEND_URL") or None,
)
projects: dict[str, str] = {}
ids = itertools.count(1)


@post("/api/projects")
async def create_project(data: dict[str, object]) -> dict[str, str]:
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationException('send {"name": "..."}')
    # Per process: with several workers the ids overlap, which this example can live with.
    project_id = f"{os.getpid()}-{next(ids)}"
    projects[project_id] = name  # the "commit"
    updates.notify("projects", key=project_id)
    return {"id": project_id, "name": name}


@get("/api/projects")
async def list_projects() -> dict[str, dict[str, str]]:
    return {"projects": projects}


app = Litestar(
    route_handlers=[asgi("/api/updates")(UpdatesEndpoint(updates)), create_project, list_projects],
    lifespan=[updates.lifespan],
)
