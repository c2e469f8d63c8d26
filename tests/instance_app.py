"""One refetch instance, for the multi-instance tests: ``REFETCH_BACKEND=<url> uvicorn tests.instance_app:app``.

Streams authenticate with ``Authorization: Bearer <subject>[@<session>]:<scope>,<scope>``
(no header: anonymous); the routes let a test notify, reauthorize and close streams through this
instance the way an app's request handlers would.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from refetch import ANONYMOUS, Principal, UpdatesEndpoint, UpdateService
from refetch._types import Scope

from .conftest import TYPES


def principal_from(scope: Scope) -> Principal | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            if not value.startswith(b"Bearer "):
                return None
            who, _, scopes = value[7:].decode().partition(":")
            subject, at, session = who.partition("@")
            return Principal.of(
                subject, [s for s in scopes.split(",") if s], session=session if at else None
            )
    return ANONYMOUS


def _scopes(text: str | None) -> list[str]:
    return [s for s in (text or "").split(",") if s]


def build(service: UpdateService) -> Starlette:
    async def notify(request: Request) -> JSONResponse:
        q = request.query_params
        audience = _scopes(q.get("audience")) if "audience" in q else None
        cursor = await service.publish(q["type"], q.get("key"), audience=audience)
        return JSONResponse({"cursor": cursor})

    async def reauthorize(request: Request) -> JSONResponse:
        q = request.query_params
        subject = q["subject"]
        changed = service.reauthorize(subject, Principal.of(subject, _scopes(q.get("scopes"))))
        await service.flush()  # answer once every instance can hear it
        return JSONResponse({"changed": changed})

    async def close(request: Request) -> JSONResponse:
        q = request.query_params
        ended = service.close_streams(
            "signed out", subject=q.get("subject"), session=q.get("session")
        )
        await service.flush()
        return JSONResponse({"ended": ended})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"cursor": service.cursor})

    return Starlette(
        routes=[
            Route("/notify", notify, methods=["POST"]),
            Route("/reauthorize", reauthorize, methods=["POST"]),
            Route("/close", close, methods=["POST"]),
            Route("/health", health),
            Route("/updates", UpdatesEndpoint(service, authenticate=principal_from)),
        ],
        lifespan=service.lifespan,
    )


app = build(
    UpdateService(
        TYPES,
        backend=os.environ.get("REFETCH_BACKEND", "memory://"),
        min_interval=0.02,
    )
)
