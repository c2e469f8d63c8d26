"""Tenant-scoped lookups and role checks shared by the routers.

Anything outside the caller's tenants is reported as `404`, exactly like an id that does not
exist, so ids leak nothing about other tenants. A member without the right role gets `403`.
"""

from __future__ import annotations

from typing import Any, NoReturn

from fastapi import HTTPException, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .auth import Auth, TenantAccess
from .models import Instance, Project, Role
from .schemas import Error, TooManyRequests
from .updates import tenant_scope

MAX_ID = 2**31 - 1  # INTEGER on PostgreSQL: larger ids cannot exist (and would raise there)

WRITERS = frozenset({Role.admin, Role.member})

Responses = dict[int | str, dict[str, Any]]

ERRORS: Responses = {
    401: {"model": Error, "description": "Not signed in"},
    403: {"model": Error, "description": "CSRF check failed, or the role does not allow this"},
    404: {"model": Error, "description": "No such object in the caller's tenants"},
}


LOGIN_ERRORS: Responses = {
    401: {"model": Error, "description": "Wrong email or password"},
    429: {
        "model": TooManyRequests,
        "description": "Too many failed logins for this account or address, or too many "
        "logins at once (see `Retry-After`); the password was not checked",
        "headers": {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
        },
    },
}


def conflicts(description: str) -> Responses:
    """A 409 for `responses=`: what conflicts, and nothing was written."""
    return {409: {"model": Error, "description": description + "; nothing was changed"}}


def not_found(what: str) -> NoReturn:
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")


def forbidden(detail: str) -> NoReturn:
    raise HTTPException(status.HTTP_403_FORBIDDEN, detail)


def conflict(detail: str) -> NoReturn:
    raise HTTPException(status.HTTP_409_CONFLICT, detail)


def tenant_access(auth: Auth, slug: str | None) -> TenantAccess:
    """The named tenant (404 unless the caller belongs to it), or the caller's first one."""
    if slug is None:
        if not auth.tenants:
            forbidden("you belong to no tenant")
        return next(iter(auth.tenants.values()))
    access = auth.access(slug)
    if access is None:
        not_found(f"tenant {slug!r}")
    return access


def require_writer(auth: Auth, tenant_id: int) -> None:
    role = auth.role_in(tenant_id)
    if role not in WRITERS:
        forbidden(f"your role in this tenant ({role}) is read-only")
    auth.audience.add(tenant_scope(auth.slug_of(tenant_id) or ""))


def require_admin(auth: Auth, tenant_id: int) -> None:
    if auth.role_in(tenant_id) is not Role.admin:
        forbidden("only a tenant admin can manage members")
    auth.audience.add(tenant_scope(auth.slug_of(tenant_id) or ""))


async def get_project(db: AsyncSession, auth: Auth, project_id: int) -> Project:
    if not 0 < project_id <= MAX_ID:
        not_found("project")
    project = await db.scalar(
        select(Project).where(Project.id == project_id, Project.tenant_id.in_(auth.tenant_ids))
    )
    if project is None:
        not_found("project")
    return project


async def get_instance(db: AsyncSession, auth: Auth, instance_id: int) -> tuple[Instance, Project]:
    if not 0 < instance_id <= MAX_ID:
        not_found("instance")
    row = (
        await db.execute(
            select(Instance, Project)
            .join(Project, Instance.project_id == Project.id)
            .where(Instance.id == instance_id, Project.tenant_id.in_(auth.tenant_ids))
        )
    ).first()
    if row is None:
        not_found("instance")
    return row
