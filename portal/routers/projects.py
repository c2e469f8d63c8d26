"""Projects: per tenant; admins and members write, viewers read."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import schemas
from ..access import ERRORS, conflict, conflicts, get_project, require_writer, tenant_access
from ..auth import Auth, CurrentAuth, Database
from ..db import notify_after_commit
from ..models import Instance, Project, utcnow
from ..updates import UpdateType, tenant_scope

router = APIRouter(prefix="/api/projects", tags=[UpdateType.projects], responses=ERRORS)


def project_out(auth: Auth, project: Project) -> schemas.Project:
    return schemas.Project(
        id=project.id,
        tenant=auth.slug_of(project.tenant_id) or "",
        name=project.name,
        created_at=project.created_at,
        updated_at=project.updated_at,
    )


@router.get("")
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
    notify_after_commit(db, UpdateType.projects, project.id, audience={tenant_scope(access.slug)})
    await db.commit()
    return project_out(auth, project)


@router.get("/{project_id}")
async def get_project_by_id(project_id: int, auth: CurrentAuth, db: Database) -> schemas.Project:
    return project_out(auth, await get_project(db, auth, project_id))


@router.patch("/{project_id}", responses=conflicts("The tenant already has a project of that name"))
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
        notify_after_commit(
            db,
            UpdateType.projects,
            project.id,
            audience={tenant_scope(auth.slug_of(project.tenant_id) or "")},
        )
        await db.commit()
    return project_out(auth, project)


@router.delete(
    "/{project_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=conflicts("A concurrent change to the project won"),
)
async def delete_project(project_id: int, auth: CurrentAuth, db: Database) -> Response:
    project = await get_project(db, auth, project_id)
    require_writer(auth, project.tenant_id)
    audience = {tenant_scope(auth.slug_of(project.tenant_id) or "")}
    instance_ids = list(
        await db.scalars(select(Instance.id).where(Instance.project_id == project.id))
    )
    await db.delete(project)
    notify_after_commit(db, UpdateType.projects, project.id, audience=audience)
    for instance_id in instance_ids:  # they go with the project
        notify_after_commit(db, UpdateType.compute, instance_id, audience=audience)
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
