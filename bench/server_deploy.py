"""The app restarted by bench/deploy_return.py: its state lives in SQLite, so a change made
while it is down is there when it is back.

    python bench/server_deploy.py --port 8000 --db /tmp/deploy.db [--drain-spread 2.0]

``GET /api/projects`` reads the version from the database (the "data" a page shows);
``GET /api/health`` answers once the server accepts connections. No ``POST``: the change is
written to the database by another process while this one is down, as a deploy's migration
or another service would; the restarted hub is a new run (a new epoch), so every stream
that resumes with its old cursor gets ``resync`` and its client refetches.
"""

from __future__ import annotations

import argparse
import sqlite3

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from refetch import UpdatesEndpoint, UpdateService


def build(db: str, drain_spread: float) -> Starlette:
    updates = UpdateService(["projects"], drain_spread=drain_spread)
    connection = sqlite3.connect(db, check_same_thread=False)

    async def projects(request: Request) -> JSONResponse:
        (version,) = connection.execute("SELECT version FROM projects").fetchone()
        return JSONResponse({"version": version})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({})

    return Starlette(
        routes=[
            Route("/api/updates", UpdatesEndpoint(updates)),
            Route("/api/projects", projects),
            Route("/api/health", health),
        ],
        lifespan=updates.lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--drain-spread", type=float, default=2.0)
    args = parser.parse_args()
    app = build(args.db, args.drain_spread)
    # backlog: the whole set of clients may knock within one step of the server answering.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
