"""Progress: the platform progress feed, served from the poller's cache with its staleness."""

from __future__ import annotations

from fastapi import APIRouter, Request

from refetch.routes import reads

from .. import schemas
from ..access import ERRORS
from ..auth import CurrentAuth
from ..pollers import PROGRESS
from ..updates import PortalRoute, UpdateType

router = APIRouter(
    prefix="/api", tags=[UpdateType.progress], responses=ERRORS, route_class=PortalRoute
)


@router.get("/progress", dependencies=[reads(UpdateType.progress)])
async def get_progress(request: Request, auth: CurrentAuth) -> schemas.Progress:
    cached = request.app.state.worker.latest(PROGRESS)
    state = cached.value or {}
    return schemas.Progress(
        value=state.get("value"),
        phase=state.get("phase"),
        fetched_at=cached.fetched_at,
        changed_at=cached.changed_at,
        stale=cached.stale or not cached.has_value,
        error=cached.error if cached.has_value or cached.error else "not fetched yet",
    )
