"""Compute: instances in a project, moved through their life cycle by the simulated provider.

Every action is a transaction that sets a transitional status (provisioning, starting,
stopping, deleting); its route declares the `compute` change (notified once it committed). The
provider finishes the step later in its own transaction and notifies again by hand: one
`compute` notification per committed step, keyed by instance id.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from refetch.routes import changes, from_result, reads

from .. import schemas
from ..access import (
    ERRORS,
    conflict,
    conflicts,
    get_instance,
    get_project,
    require_writer,
    tenant_access,
)
from ..auth import Auth, CurrentAuth, Database
from ..db import call_after_commit
from ..models import Instance, InstanceStatus, Project, utcnow
from ..pollers import IMAGES
from ..updates import PortalRoute, UpdateType, caller_audience

router = APIRouter(
    prefix="/api", tags=[UpdateType.compute], responses=ERRORS, route_class=PortalRoute
)

#: What each instance action declares: this instance changed, for its tenant.
INSTANCE_CHANGED = [
    changes(UpdateType.compute, key="instance_id", audience=caller_audience),
]

FLAVORS = [
    schemas.Flavor(name=schemas.FlavorName.s1_small, vcpus=1, memory_gb=2),
    schemas.Flavor(name=schemas.FlavorName.s1_medium, vcpus=2, memory_gb=4),
    schemas.Flavor(name=schemas.FlavorName.m1_large, vcpus=4, memory_gb=16),
    schemas.Flavor(name=schemas.FlavorName.c1_xlarge, vcpus=16, memory_gb=32),
]


def instance_out(auth: Auth, instance: Instance, project: Project) -> schemas.Instance:
    return schemas.Instance(
        id=instance.id,
        project_id=project.id,
        tenant=auth.slug_of(project.tenant_id) or "",
        name=instance.name,
        flavor=instance.flavor,
        image=instance.image,
        status=instance.status,
        created_at=instance.created_at,
        updated_at=instance.updated_at,
    )


@router.get("/flavors", dependencies=[reads(UpdateType.compute)])
async def list_flavors(auth: CurrentAuth) -> list[schemas.Flavor]:
    return FLAVORS


@router.get("/instances", dependencies=[reads(UpdateType.compute)])
async def list_instances(
    auth: CurrentAuth,
    db: Database,
    tenant: str | None = Query(default=None, description="Only this tenant's instances."),
) -> list[schemas.Instance]:
    tenant_ids = [tenant_access(auth, tenant).tenant_id] if tenant else auth.tenant_ids
    rows = await db.execute(
        select(Instance, Project)
        .join(Project, Instance.project_id == Project.id)
        .where(Project.tenant_id.in_(tenant_ids))
        .order_by(Instance.id)
    )
    return [instance_out(auth, i, p) for i, p in rows]


@router.get(
    "/projects/{project_id}/instances",
    dependencies=[reads(UpdateType.compute), reads(UpdateType.authentication)],  # tenant data
)
async def list_project_instances(
    project_id: int, auth: CurrentAuth, db: Database
) -> list[schemas.Instance]:
    project = await get_project(db, auth, project_id)
    instances = await db.scalars(
        select(Instance).where(Instance.project_id == project.id).order_by(Instance.id)
    )
    return [instance_out(auth, i, project) for i in instances]


@router.post(
    "/projects/{project_id}/instances",
    status_code=status.HTTP_201_CREATED,
    responses=conflicts(
        "The project already has an instance of that name, or the image is not in the "
        "catalog (GET /api/images; it changes, so the schema cannot list it)"
    ),
    dependencies=[changes(UpdateType.compute, key=from_result("id"), audience=caller_audience)],
)
async def create_instance(
    project_id: int,
    body: schemas.InstanceCreate,
    request: Request,
    auth: CurrentAuth,
    db: Database,
) -> schemas.Instance:
    project = await get_project(db, auth, project_id)
    require_writer(auth, project.tenant_id)
    if body.image is not None:
        catalog = request.app.state.worker.latest(IMAGES)
        # An image must exist in the catalog, as far as the portal knows it. 409, not 422:
        # the request is well formed, the catalog (which changes) lacks the image.
        if catalog.has_value and body.image not in {i.id for i in catalog.value}:
            conflict(f"image {body.image!r} is not in the catalog; see GET /api/images")
    instance = Instance(
        project_id=project.id,
        name=body.name,
        flavor=body.flavor,
        image=body.image,
        status=InstanceStatus.provisioning,
    )
    db.add(instance)
    try:
        await db.flush()
    except IntegrityError:
        conflict(f"this project already has an instance named {body.name!r}")
    _step_committed(request, db, instance)
    await db.commit()
    return instance_out(auth, instance, project)


@router.get("/instances/{instance_id}", dependencies=[reads(UpdateType.compute, key="instance_id")])
async def get_instance_by_id(instance_id: int, auth: CurrentAuth, db: Database) -> schemas.Instance:
    return instance_out(auth, *await get_instance(db, auth, instance_id))


async def _transition(
    request: Request,
    auth: Auth,
    db: Database,
    instance_id: int,
    allowed_from: set[InstanceStatus],
    to: InstanceStatus,
    action: str,
) -> schemas.Instance:
    instance, project = await get_instance(db, auth, instance_id)
    require_writer(auth, project.tenant_id)
    if instance.status not in allowed_from:
        conflict(f"cannot {action} an instance that is {instance.status}")
    instance.status = to
    instance.updated_at = utcnow()
    _step_committed(request, db, instance)
    await db.commit()
    return instance_out(auth, instance, project)


def _step_committed(request: Request, db: Database, instance: Instance) -> None:
    """Once committed, the provider finishes the step (and notifies it, by hand)."""
    provider = request.app.state.provider
    instance_id, new_status = instance.id, instance.status
    call_after_commit(db, lambda: provider.schedule(instance_id, new_status))


@router.post(
    "/instances/{instance_id}/start",
    status_code=status.HTTP_202_ACCEPTED,
    responses=conflicts("The instance is not stopped"),
    dependencies=INSTANCE_CHANGED,
)
async def start_instance(
    instance_id: int, request: Request, auth: CurrentAuth, db: Database
) -> schemas.Instance:
    return await _transition(
        request, auth, db, instance_id, {InstanceStatus.stopped}, InstanceStatus.starting, "start"
    )


@router.post(
    "/instances/{instance_id}/stop",
    status_code=status.HTTP_202_ACCEPTED,
    responses=conflicts("The instance is not running"),
    dependencies=INSTANCE_CHANGED,
)
async def stop_instance(
    instance_id: int, request: Request, auth: CurrentAuth, db: Database
) -> schemas.Instance:
    return await _transition(
        request, auth, db, instance_id, {InstanceStatus.running}, InstanceStatus.stopping, "stop"
    )


@router.delete(
    "/instances/{instance_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses=conflicts("The instance is already being deleted"),
    dependencies=INSTANCE_CHANGED,
)
async def delete_instance(
    instance_id: int, request: Request, auth: CurrentAuth, db: Database
) -> schemas.Instance:
    return await _transition(
        request,
        auth,
        db,
        instance_id,
        set(InstanceStatus) - {InstanceStatus.deleting},
        InstanceStatus.deleting,
        "delete",
    )
