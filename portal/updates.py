"""The update types, the hub, and who may hear what.

`UpdateType` is the one list of update types: the hub is declared with it, every router tags
its routes with it, and the OpenAPI schema carries it as an enum for the TypeScript client.
"""

from __future__ import annotations

import enum
import inspect
from typing import Any

from fastapi import Request

from refetch import Principal, UpdateService
from refetch.routes import Context, DeclaredRoute

from .config import Settings


class UpdateType(enum.StrEnum):
    progress = "progress"
    projects = "projects"
    compute = "compute"
    images = "images"
    authentication = "authentication"
    gardener = "gardener"


def tenant_scope(slug: str) -> str:
    return f"tenant:{slug}"


def user_scope(user_id: int) -> str:
    return f"user:{user_id}"


def principal_for(
    user_id: int, tenant_slugs: list[str], session_id: str | None = None
) -> Principal:
    """A user's stream hears about their own account and every tenant they belong to.

    Its subject is the user id (`reauthorize` and "sign out everywhere" reach every stream of
    the user); its session is the login's public id (sign-out ends that browser's streams)."""
    return Principal.of(
        str(user_id),
        [user_scope(user_id), *(tenant_scope(slug) for slug in tenant_slugs)],
        session=session_id,
    )


class PortalRoute(DeclaredRoute):
    """The portal's routes: what they declare with `changes(...)` goes to its hub."""

    def service_for(self, request: Request) -> UpdateService:
        service: UpdateService = request.app.state.updates
        return service


def caller_audience(context: Context) -> set[str]:
    """A declared change is heard by the request's audience (see `Auth.audience`): a tenant
    only once the caller was cleared to write in it, so nothing reaches other tenants."""
    return set(context.request.state.auth.audience)


def caller_id(context: Context) -> int:
    """The key of a change to the caller's own account."""
    user_id: int = context.request.state.auth.user.id
    return user_id


def create_update_service(settings: Settings) -> UpdateService:
    kwargs: dict[str, Any] = {}
    if settings.backend_url:
        # Multi-instance fan-out lands as UpdateService(backend=...); until this refetch
        # has it, a configured backend must not be silently ignored.
        if "backend" not in inspect.signature(UpdateService).parameters:
            raise RuntimeError(
                "REFETCH_BACKEND_URL is set, but this version of refetch has no backends yet; "
                "unset it to run a single instance with the in-memory hub"
            )
        kwargs["backend"] = settings.backend_url
    return UpdateService(
        UpdateType,
        min_interval=settings.min_interval,
        heartbeat=settings.heartbeat,
        close_on_signals=settings.close_on_signals,
        **kwargs,
    )
