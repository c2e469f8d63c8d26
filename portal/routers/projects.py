"""Projects: per tenant; admins and members write, viewers read.

Each route declares what it reads and changes (`refetch.routes`); a change is heard by the
project's tenant once it committed (`caller_audience`).
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Response, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from refetch.routes import changes, from_result, reads

from .. import schemas
from ..access import ERRORS, conflict, conflicts, get_project, require_writer, tenant_access
from ..auth import Auth, CurrentAuth, Database
from ..models import Project, utcnow
from ..updates import PortalRoute, UpdateType, caller_audience

router = APIRouter(
    prefix="/api/projects",
    tags=[UpdateType.projects],
    responses=ERRORS,
    route_class=PortalRoute,
)


def project_out(auth: Auth, project: Project) -> schemas.Project:
    return schemas.Project(
        id=project.id,
        tenant=auth.slug_of(project.tenant_id) or "",
        name=project.name,
        created_at=project.created_at,
        updated_at=project.updated_at,
    )


# Tenant data: who belongs to a tenant (authentication) changes what it returns, too.
@router.get("", dependencies=[reads(UpdateType.projects, UpdateType.authentication)])
async def list_projects(
    auth: CurrentAuth,
    db: Database,
    tenant: str | None = Query(default=None, description="Only this tenant's projects."),
) -> list[schemas.Project]:
    tenant_ids = [tenant_access(auth, tenant).tenant_id] if tenant else auth.tenant_ids
    projects = await db.scalars(
        select(Project).where(Project.tenant_id.in_(tenant_ids)).order_by(Project.id)
    )
    return [project_out(auth, p) for p in projects]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=conflicts("The tenant already has a project of that name"),
    dependencies=[changes(UpdateType.projects, key=from_result("id"), audience=caller_audience)],
)
async def create_project(
    body: schemas.ProjectCreate, auth: CurrentAuth, db: Database
) -> schemas.Project:
    access = tenant_access(auth, body.tenant)
    require_writer(auth, access.tenant_id)
    project = Project(tenant_id=access.tenant_id, name=body.name)
    db.add(project)
    try:
        await db.flush()
    except IntegrityError:
        conflict(f"tenant {access.slug!r} already has a project named {body.name!r}")
    await db.commit()
    return project_out(auth, project)


@router.get(
    "/{project_id}",
    dependencies=[reads(UpdateType.projects, key="project_id"), reads(UpdateType.authentication)],
)
async def get_project_by_id(project_id: int, auth: CurrentAuth, db: Database) -> schemas.Project:
    return project_out(auth, await get_project(db, auth, project_id))


@router.patch(
    "/{project_id}",
    responses=conflicts("The tenant already has a project of that name"),
    dependencies=[
        changes(UpdateType.projects, key="project_id", audience=caller_audience),
    ],
)
async def rename_project(
    project_id: int, body: schemas.ProjectUpdate, auth: CurrentAuth, db: Database
) -> schemas.Project:
    project = await get_project(db, auth, project_id)
    require_writer(auth, project.tenant_id)
    if project.name != body.name:
        project.name = body.name
        project.updated_at = utcnow()
        try:
            await db.flush()
        except IntegrityError:
            conflict(f"this tenant already has a project named {body.name!r}")
        await db.commit()
    return project_out(auth, project)


@router.delete(
    "/{project_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=conflicts("A concurrent change to the project won"),
    dependencies=[
        changes(UpdateType.projects, key="project_id", audience=caller_audience),
        # its instances go with it: the tenant's instance lists refetch
        changes(UpdateType.compute, audience=caller_audience),
    ],
)
async def delete_project(project_id: int, auth: CurrentAuth, db: Database) -> Response:
    project = await get_project(db, auth, project_id)
    require_writer(auth, project.tenant_id)
    await db.delete(project)
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
