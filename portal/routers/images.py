"""Images: the catalog of the simulated registry, served from the poller's cache."""

from __future__ import annotations

from fastapi import APIRouter, Request

from refetch.routes import reads

from .. import schemas
from ..access import ERRORS
from ..auth import CurrentAuth
from ..pollers import IMAGES
from ..updates import PortalRoute, UpdateType

router = APIRouter(
    prefix="/api", tags=[UpdateType.images], responses=ERRORS, route_class=PortalRoute
)


@router.get("/images", dependencies=[reads(UpdateType.images)])
async def list_images(request: Request, auth: CurrentAuth) -> schemas.Images:
    cached = request.app.state.worker.latest(IMAGES)
    return schemas.Images(
        images=cached.value or [],
        fetched_at=cached.fetched_at,
        changed_at=cached.changed_at,
        stale=cached.stale or not cached.has_value,
        error=cached.error if cached.has_value or cached.error else "not fetched yet",
    )
