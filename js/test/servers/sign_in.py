"""A server with sign-in, for js/test/sign-in.test.ts: the update stream and GET /api/me answer 401
until POST /api/sign-in has made the request's bearer token valid.

PORT=8000 .venv/bin/python js/test/servers/sign_in.py
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Scope

from refetch import Principal, UpdatesEndpoint, UpdateService

updates = UpdateService(types=["projects"])
signed_in: set[str] = set()


def token_of(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"authorization" and value.startswith(b"Bearer "):
            return value[len(b"Bearer ") :].decode("latin-1")
    return ""


def authenticate(scope: Scope) -> Principal | None:
    token = token_of(scope["headers"])
    return Principal(subject=token) if token in signed_in else None


async def sign_in(request: Request) -> JSONResponse:
    signed_in.add(token_of(request.scope["headers"]))
    return JSONResponse({"signed_in": True})


async def me(request: Request) -> JSONResponse:
    if authenticate(request.scope) is None:
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    return JSONResponse({"token": token_of(request.scope["headers"])})


async def progress(request: Request) -> JSONResponse:
    return JSONResponse({"value": 0})  # what test/python-server.ts polls until the server is up


async def create_project(request: Request) -> JSONResponse:
    updates.notify("projects", key="1")
    return JSONResponse({"id": "1"}, status_code=201)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with updates:
        yield


app = Starlette(
    routes=[
        Route("/api/updates", UpdatesEndpoint(updates, authenticate=authenticate)),
        Route("/api/sign-in", sign_in, methods=["POST"]),
        Route("/api/me", me),
        Route("/api/progress", progress),
        Route("/api/projects", create_project, methods=["POST"]),
    ],
    lifespan=lifespan,
)

if __name__ == "__main__":
    uvicorn.run(
        app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000"))
    )
