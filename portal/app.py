"""The portal's FastAPI app: wiring only. The lifespan owns every background task.

Order on start: schema and demo data, then the hub, then the pollers and the compute provider
(both notify the hub, so it starts before and stops after them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.staticfiles import StaticFiles

import refetch
from refetch import BackgroundWorker, CursorHeaderMiddleware
from refetch.fastapi import UpdatesResponse, UpdatesStream

from .auth import StreamPrincipal, is_authenticated
from .config import Settings, session_secret
from .db import create_engine, create_schema, create_sessionmaker
from .etag import ETagMiddleware
from .methods import method_not_allowed
from .openapi import custom_openapi, operation_id
from .passwords import PasswordChecker
from .pollers import portal_pollers
from .provider import ComputeProvider
from .routers import admin, authentication, compute, gardener, images, progress, projects
from .seed import all_tenant_slugs, seed_demo
from .sessions import SessionReaper
from .throttle import LoginThrottled, LoginThrottler
from .updates import create_update_service


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    updates = create_update_service(settings)
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine, updates)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await create_schema(engine)
        await seed_demo(sessionmaker)
        slugs = await all_tenant_slugs(sessionmaker)
        async with AsyncExitStack() as stack:
            stack.push_async_callback(engine.dispose)
            await stack.enter_async_context(updates)
            app.state.worker = await stack.enter_async_context(
                BackgroundWorker(updates, portal_pollers(settings, slugs))
            )
            app.state.provider = await stack.enter_async_context(
                ComputeProvider(sessionmaker, step=settings.provider_step)
            )
            app.state.passwords = await stack.enter_async_context(
                PasswordChecker(settings.password_workers, settings.password_queue)
            )
            await stack.enter_async_context(SessionReaper(updates, sessionmaker, settings))
            yield

    app = FastAPI(
        title="refetch portal",
        version="0.1.0",
        description="The refetch reference app: a multi-tenant cloud portal that stays live "
        "with one update stream per client (GET /api/updates).",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.updates = updates
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker
    app.state.secret = session_secret(settings)
    app.state.metrics_registry = admin.metrics_registry(updates)
    app.state.login_throttler = LoginThrottler(settings)

    for module in (authentication, projects, compute, images, progress, gardener, admin):
        app.include_router(module.router)
    stream = UpdatesStream(updates)

    @app.get(
        "/api/updates",
        tags=["updates"],
        summary="The one update stream (Server-Sent Events, refetch protocol v1)",
        description="Resume with the `Last-Event-ID` header or `lastEventId=`.",
        **stream.operation,
    )
    async def stream_updates(principal: StreamPrincipal) -> UpdatesResponse:
        return stream.open(principal)

    app.add_middleware(ETagMiddleware)
    # Outside the ETag one, so a 304 carries the cursor its revalidation was read at too.
    # Only to signed-in callers: the cursor counts every tenant's changes, which is nobody
    # else's business.
    app.add_middleware(CursorHeaderMiddleware, service=updates, when=is_authenticated)

    @app.exception_handler(LoginThrottled)
    async def login_throttled(request: Request, exc: LoginThrottled) -> JSONResponse:
        return exc.answer()

    @app.exception_handler(IntegrityError)
    async def integrity_error(request: Request, exc: IntegrityError) -> JSONResponse:
        # A concurrent write won a race our checks could not see; nothing was committed.
        return JSONResponse({"detail": "conflicting change, please retry"}, status_code=409)

    app.add_exception_handler(405, method_not_allowed)

    app.openapi = lambda: custom_openapi(app)  # type: ignore[method-assign]

    if settings.ui_dist.is_dir():  # the built React UI (issue 8), when it exists
        app.mount("/", StaticFiles(directory=settings.ui_dist, html=True), name="ui")
    # The stream's handshake goes through every layer above; its frames straight to uvicorn.
    return refetch.mount(app, "/api/updates")
