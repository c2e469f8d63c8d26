"""Authentication: login/logout, `GET /api/me`, and tenant membership management.

When an admin changes a member's role or removes them, the transaction's after-commit step
first narrows that user's open streams (`UpdateService.reauthorize`), then notifies
`authentication` to the user (refetch /api/me) and to the tenant (refetch member lists).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import func, select

from refetch import PublishError

from .. import schemas
from ..access import ERRORS, conflict, not_found, require_admin, tenant_access
from ..auth import (
    COOKIE_NAME,
    Auth,
    CurrentAuth,
    Database,
    hash_token,
    load_auth,
    new_token,
    signer,
    tenant_slugs,
)
from ..db import call_after_commit, notify_after_commit
from ..models import LoginSession, Membership, Role, User
from ..passwords import check_password
from ..updates import UpdateType, principal_for, tenant_scope, user_scope

logger = logging.getLogger("portal")

router = APIRouter(prefix="/api", tags=[UpdateType.authentication])


def me_out(auth: Auth) -> schemas.Me:
    return schemas.Me(
        id=auth.user.id,
        email=auth.user.email,
        name=auth.user.name,
        tenants=[
            schemas.TenantRole(slug=slug, name=a.name, role=a.role)
            for slug, a in auth.tenants.items()
        ],
        csrf_token=auth.login.csrf_token,
    )


@router.post("/login", responses={401: {"description": "Wrong email or password"}})
async def login(
    body: schemas.LoginRequest, request: Request, response: Response, db: Database
) -> schemas.LoginResponse:
    user = await db.scalar(select(User).where(User.email == body.email.lower()))
    if not await check_password(body.password, user.password_hash if user else None) or not user:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong email or password")
    token = new_token()
    db.add(LoginSession(token_hash=hash_token(token), user_id=user.id, csrf_token=new_token()))
    await db.commit()
    auth = await load_auth(db, token, "cookie")
    if auth is None:  # the user was deleted in between
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong email or password")
    response.set_cookie(
        COOKIE_NAME,
        signer(request.app.state.secret).sign(token).decode(),
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.secure_cookies,
        path="/",
    )
    return schemas.LoginResponse(token=token, csrf_token=auth.login.csrf_token, user=me_out(auth))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
async def logout(request: Request, auth: CurrentAuth, db: Database) -> Response:
    login = await db.get(LoginSession, auth.login.token_hash)
    if login is not None:
        await db.delete(login)
        await db.commit()
    # Open streams were authenticated by this session: end them, so this browser's
    # reconnect gets 401; the user's other sessions reconnect and carry on.
    request.app.state.updates.close_streams("signed out", subject=str(auth.user.id))
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    await revocation_published(request, response)
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


@router.get("/me", responses=ERRORS)
async def get_me(auth: CurrentAuth) -> schemas.Me:
    return me_out(auth)


@router.get("/tenants/{tenant}/members", responses=ERRORS)
async def list_members(tenant: str, auth: CurrentAuth, db: Database) -> list[schemas.Member]:
    access = tenant_access(auth, tenant)
    rows = await db.execute(
        select(Membership, User)
        .join(User, Membership.user_id == User.id)
        .where(Membership.tenant_id == access.tenant_id)
        .order_by(User.id)
    )
    return [schemas.Member(user_id=u.id, email=u.email, name=u.name, role=m.role) for m, u in rows]


@router.post("/tenants/{tenant}/members", status_code=status.HTTP_201_CREATED, responses=ERRORS)
async def add_member(
    tenant: str,
    body: schemas.MemberAdd,
    request: Request,
    response: Response,
    auth: CurrentAuth,
    db: Database,
) -> schemas.Member:
    access = tenant_access(auth, tenant)
    require_admin(auth, access.tenant_id)
    user = await db.scalar(select(User).where(User.email == body.email.lower()))
    if user is None:
        not_found("user")
    if await db.get(Membership, (user.id, access.tenant_id)) is not None:
        conflict(f"{user.email} is already a member of {tenant!r}")
    db.add(Membership(user_id=user.id, tenant_id=access.tenant_id, role=body.role))
    await db.flush()
    await _membership_changed(request, db, user.id, access.slug)
    await db.commit()
    await revocation_published(request, response)
    return schemas.Member(user_id=user.id, email=user.email, name=user.name, role=body.role)


@router.patch("/tenants/{tenant}/members/{user_id}", responses=ERRORS)
async def change_member_role(
    tenant: str,
    user_id: int,
    body: schemas.MemberUpdate,
    request: Request,
    response: Response,
    auth: CurrentAuth,
    db: Database,
) -> schemas.Member:
    access = tenant_access(auth, tenant)
    require_admin(auth, access.tenant_id)
    membership, user = await _member(db, access.tenant_id, user_id)
    if membership.role != body.role:
        if membership.role is Role.admin:
            await _keep_an_admin(db, access.tenant_id)
        membership.role = body.role
        await db.flush()
        await _membership_changed(request, db, user.id, access.slug)
        await db.commit()
        await revocation_published(request, response)
    return schemas.Member(user_id=user.id, email=user.email, name=user.name, role=membership.role)


@router.delete(
    "/tenants/{tenant}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=ERRORS,
)
async def remove_member(
    tenant: str, user_id: int, request: Request, auth: CurrentAuth, db: Database
) -> Response:
    access = tenant_access(auth, tenant)
    require_admin(auth, access.tenant_id)
    membership, user = await _member(db, access.tenant_id, user_id)
    if membership.role is Role.admin:
        await _keep_an_admin(db, access.tenant_id)
    await db.delete(membership)
    await db.flush()
    await _membership_changed(request, db, user.id, access.slug)
    await db.commit()
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    await revocation_published(request, response)
    return response


async def _member(db: Database, tenant_id: int, user_id: int) -> tuple[Membership, User]:
    if not 0 < user_id <= 2**31 - 1:
        not_found("member")
    row = (
        await db.execute(
            select(Membership, User)
            .join(User, Membership.user_id == User.id)
            .where(Membership.tenant_id == tenant_id, Membership.user_id == user_id)
        )
    ).first()
    if row is None:
        not_found("member")
    return row


async def _keep_an_admin(db: Database, tenant_id: int) -> None:
    admins = await db.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.tenant_id == tenant_id, Membership.role == Role.admin)
    )
    if (admins or 0) <= 1:
        conflict("a tenant needs at least one admin; promote someone else first")


async def _membership_changed(request: Request, db: Database, user_id: int, slug: str) -> None:
    """Revoke or extend the user's open streams, and tell everyone concerned, after commit."""
    service = request.app.state.updates
    principal = principal_for(user_id, await tenant_slugs(db, user_id))  # as of this transaction
    call_after_commit(db, lambda: service.reauthorize(str(user_id), principal))
    notify_after_commit(
        db, UpdateType.authentication, user_id, audience={user_scope(user_id), tenant_scope(slug)}
    )


#: How long a revoking request waits for the broker before answering. Longer would not make
#: the change safer: it is committed and in force here already, and an instance that cannot
#: hear the broker ends its authenticated streams on its own (fail closed).
REVOCATION_FLUSH_TIMEOUT = 2.0
#: Says how far the change got when the request answered: ``published`` (every instance can
#: hear it) or ``pending`` (committed and in force on this instance; the others hear it when
#: the broker takes it, and those that cannot hear the broker end their streams meanwhile).
PROPAGATION_HEADER = "Refetch-Propagation"


async def revocation_published(request: Request, response: Response) -> None:
    """Answer once every instance can hear the change (it is ordered with the updates).

    If the backend does not take it in time, the change still holds here and in the database,
    and the answer says so (``Refetch-Propagation: pending``) instead of failing the request.
    """
    try:
        await request.app.state.updates.flush(timeout=REVOCATION_FLUSH_TIMEOUT)
    except PublishError as exc:
        logger.warning("revocation not yet published to the other instances: %r", exc)
        response.headers[PROPAGATION_HEADER] = "pending"
    else:
        response.headers[PROPAGATION_HEADER] = "published"
