"""A server whose state outlives it, for js/test/deploy.test.ts: stopped (SIGTERM, draining) and
started again, with a change written to its state file meanwhile.

Its `retry:` hint is 30 s, so a client that fell back to its error backoff would not be back for
about half a minute; its drain window is 1 s. The state file is $REFETCH_DEPLOY_STATE (a JSON
list of project ids).

REFETCH_DEPLOY_STATE=/tmp/state.json PORT=8000 .venv/bin/python js/test/servers/deploy.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from refetch import CursorHeaderMiddleware, UpdatesEndpoint, UpdateService

updates = UpdateService(types=["projects"], retry=30.0, drain_spread=1.0)
STATE = Path(os.environ["REFETCH_DEPLOY_STATE"])


def projects() -> list[str]:
    return json.loads(STATE.read_text()) if STATE.exists() else []


async def ready(request: Request) -> JSONResponse:
    return JSONResponse({})


async def list_projects(request: Request) -> JSONResponse:
    return JSONResponse(projects())


app = Starlette(
    routes=[
        Route("/api/updates", UpdatesEndpoint(updates)),
        Route("/api/progress", ready),  # what test/python-server.ts polls until it answers
        Route("/api/projects", list_projects),
    ],
    lifespan=updates.lifespan,
)
app.add_middleware(CursorHeaderMiddleware, service=updates)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
