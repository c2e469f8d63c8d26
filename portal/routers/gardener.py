"""Gardener: each tenant's Kubernetes clusters ("shoots"), one poller per tenant.

Each tenant's poller notifies only that tenant's streams (its audience), so a cluster that
changes in one tenant never makes another tenant's clients refetch.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, Request

from refetch.routes import reads

from .. import schemas
from ..access import ERRORS, tenant_access
from ..auth import CurrentAuth
from ..pollers import gardener_poller_name
from ..updates import PortalRoute, UpdateType

router = APIRouter(
    prefix="/api", tags=[UpdateType.gardener], responses=ERRORS, route_class=PortalRoute
)


# Tenant data: who belongs to a tenant (authentication) changes what it returns, too.
@router.get("/clusters", dependencies=[reads(UpdateType.gardener, UpdateType.authentication)])
async def list_clusters(
    request: Request,
    auth: CurrentAuth,
    tenant: str | None = Query(default=None, description="Only this tenant's clusters."),
) -> schemas.Clusters:
    slugs = [tenant_access(auth, tenant).slug] if tenant else list(auth.tenants)
    worker = request.app.state.worker
    known = {p.name for p in worker.pollers}
    clusters: list[schemas.Cluster] = []
    fetched: list[datetime] = []
    changed: list[datetime] = []
    stale = False
    error: str | None = None
    for slug in slugs:
        name = gardener_poller_name(slug)
        if name not in known:  # a tenant created after start: polled from the next start
            continue
        cached = worker.latest(name)
        clusters.extend(cached.value or [])
        if cached.fetched_at is not None:
            fetched.append(cached.fetched_at)
            if cached.changed_at is not None:
                changed.append(cached.changed_at)
        else:
            error = error or cached.error or "not fetched yet"
        if cached.stale or not cached.has_value:
            stale = True
            error = error or cached.error
    return schemas.Clusters(
        clusters=clusters,
        # the oldest confirmation: how fresh the whole list is guaranteed to be
        fetched_at=min(fetched) if fetched and len(fetched) == len(slugs) else None,
        changed_at=max(changed) if changed else None,
        stale=stale,
        error=error,
    )
