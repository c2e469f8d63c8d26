"""Operator views of the update hub: Prometheus metrics (operators) and open streams (admins).

Not in the OpenAPI schema (and so not in the UI's generated client): they are for
operators and scrapers, not for the app's pages. The metrics are the whole hub's counts by
update type, across tenants (a tenant admin watching them would see other tenants' activity),
so only operators get them: the users listed in `PORTAL_OPERATORS`, or a scraper sending the
fixed `PORTAL_METRICS_TOKEN` (403 for everyone else).
The stream list is per tenant: an admin in at least one tenant sees the streams of the
tenants they administer (403 otherwise). A Prometheus scraper sends ``Authorization: Bearer
<PORTAL_METRICS_TOKEN>`` (a login session would expire under it).
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel
from sqlalchemy import select

from refetch import UpdateService
from refetch.metrics import RefetchCollector

from ..access import forbidden
from ..auth import CurrentAuth, Database, current_auth
from ..models import Role, User
from ..updates import tenant_scope

router = APIRouter(prefix="/api/admin", include_in_schema=False)


def metrics_registry(updates: UpdateService) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(RefetchCollector(updates))
    return registry


def admin_tenants(auth: CurrentAuth) -> list[str]:
    slugs = [slug for slug, access in auth.tenants.items() if access.role is Role.admin]
    if not slugs:
        forbidden("only a tenant admin can see the open streams")
    return slugs


@router.get("/metrics")
async def metrics(request: Request, db: Database) -> Response:
    settings = request.app.state.settings
    if not _is_metrics_token(request, settings.metrics_token):
        auth = await current_auth(request, db)
        if auth.user.email.lower() not in settings.operators:
            forbidden(
                "only an operator can see the update hub's metrics (they count every "
                "tenant); operators are listed in PORTAL_OPERATORS"
            )
    body = generate_latest(request.app.state.metrics_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _is_metrics_token(request: Request, token: str | None) -> bool:
    """The scraper's fixed token (`PORTAL_METRICS_TOKEN`), which opens this route only."""
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    return (
        token is not None
        and scheme.lower() == "bearer"
        and secrets.compare_digest(sent.strip().encode(), token.encode())
    )


class OpenStream(BaseModel):
    user_id: int | None
    email: str | None
    #: The caller's admin tenants this stream belongs to.
    tenants: list[str]
    types: list[str]
    since: str
    frames: int
    pending: list[str]
    busy: bool


class OpenStreams(BaseModel):
    streams: list[OpenStream]


@router.get("/connections")
async def connections(request: Request, auth: CurrentAuth, db: Database) -> OpenStreams:
    scopes = {tenant_scope(slug): slug for slug in admin_tenants(auth)}
    updates: UpdateService = request.app.state.updates
    mine = [c for c in updates.connections() if not c.scopes.isdisjoint(scopes)]
    # A portal stream's subject is its user's id (`principal_for`).
    ids = {int(c.subject) for c in mine if c.subject is not None}
    rows = await db.execute(select(User.id, User.email).where(User.id.in_(ids)))
    emails = {user_id: email for user_id, email in rows}
    streams = []
    for c in mine:
        user_id = None if c.subject is None else int(c.subject)
        streams.append(
            OpenStream(
                user_id=user_id,
                email=None if user_id is None else emails.get(user_id),
                tenants=sorted(scopes[s] for s in c.scopes if s in scopes),
                types=sorted(c.types),
                since=c.since.isoformat(),
                frames=c.frames,
                pending=sorted(c.pending),
                busy=c.busy,
            )
        )
    return OpenStreams(streams=streams)
