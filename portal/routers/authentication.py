"""Authentication: login/logout and one's sessions, `GET /api/me`, members and invitations.

When an admin changes a member's role or removes them, or an invitee accepts, the transaction's
after-commit step first narrows (or widens) the streams of every session of that user
(`UpdateService.reauthorize`, by hand: no declaration says that); then the route's declared
`authentication` change reaches the user (refetch /api/me) and the tenant (refetch member lists).
Signing in and out changes no update type (`changes_nothing()`); signing out ends the
session's streams by hand.

Members join by invitation: `POST /api/tenants/{tenant}/members` records an invitation and
answers the same whether or not anyone has that email, so an admin learns nothing about other
tenants' users, and nobody is added to a tenant without accepting.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import delete, exists, or_, select, true, update
from sqlalchemy.orm import aliased

from refetch import PublishError
from refetch.routes import Context, changes, changes_nothing, reads

from .. import schemas
from ..access import (
    ERRORS,
    LOGIN_ERRORS,
    Responses,
    conflict,
    conflicts,
    not_found,
    require_admin,
    tenant_access,
)
from ..auth import (
    COOKIE_NAME,
    Auth,
    CurrentAuth,
    Database,
    hash_token,
    load_auth,
    mark_authenticated,
    new_token,
    signer,
    tenant_slugs,
)
from ..db import call_after_commit
from ..models import Invitation, LoginSession, Membership, Role, Tenant, User, utcnow
from ..passwords import Busy
from ..sessions import expires_at, is_live
from ..throttle import Locked, LoginThrottled
from ..updates import (
    PortalRoute,
    UpdateType,
    caller_audience,
    caller_id,
    principal_for,
    tenant_scope,
    user_scope,
)

logger = logging.getLogger("portal")

router = APIRouter(prefix="/api", tags=[UpdateType.authentication], route_class=PortalRoute)

READS = [reads(UpdateType.authentication)]


def member_audience(context: Context) -> set[str]:
    """A member's change: told to them and to the tenant (both in the path)."""
    return {user_scope(int(context.params["user_id"])), tenant_scope(context.params["tenant"])}


def joined_audience(context: Context) -> set[str]:
    """Joining a tenant: told to the caller and to the tenant joined (the result)."""
    return {user_scope(caller_id(context)), tenant_scope(context.result["slug"])}


#: A member's role or membership changed: their account (keyed by their id) and the lists.
MEMBER_CHANGED = [changes(UpdateType.authentication, key="user_id", audience=member_audience)]
#: An invitation was made, revoked or declined: the tenant's (and invitee's) lists.
INVITATIONS_CHANGED = [changes(UpdateType.authentication, audience=caller_audience)]

# What the routes that need no tenant answer besides success (403: CSRF on cookie mutations).
_SIGNED_IN: Responses = {code: ERRORS[code] for code in (401, 403)}
_NOT_FOUND: Responses = {404: {**ERRORS[404], "description": "Not one of the caller's"}}


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


@router.post("/login", responses=LOGIN_ERRORS, dependencies=[changes_nothing()])
async def login(
    body: schemas.LoginRequest, request: Request, response: Response, db: Database
) -> schemas.LoginResponse:
    settings = request.app.state.settings
    throttler = request.app.state.login_throttler
    email = body.email.lower()
    address = request.client.host if request.client else None
    # Before the password: during a lock even the right one is not looked at.
    locked = await throttler.locked(db, email, address)
    if locked is not None:
        raise LoginThrottled(locked, "too many failed logins; try again later")
    found = (
        await db.execute(select(User.id, User.password_hash).where(User.email == email))
    ).first()
    # Give the database connection back while scrypt runs: logins waiting for a hashing
    # thread must not hold the pool's connections, or the API waits for them too.
    await db.rollback()
    try:
        ok = await request.app.state.passwords.check(
            body.password, None if found is None else found.password_hash
        )
    except Busy as busy:
        raise LoginThrottled(Locked(1), "too many logins at once; try again in a moment") from busy
    if not ok or found is None:
        await throttler.failed(db, email, address)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong email or password")
    await throttler.succeeded(db, email)
    token = new_token()
    db.add(LoginSession(token_hash=hash_token(token), user_id=found.id, csrf_token=new_token()))
    await db.commit()
    auth = await load_auth(db, token, "cookie", settings)
    if auth is None:  # the user was deleted in between
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong email or password")
    mark_authenticated(request)
    response.set_cookie(
        COOKIE_NAME,
        signer(request.app.state.secret).sign(token).decode(),
        max_age=int(settings.session_max_age),
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )
    return schemas.LoginResponse(token=token, csrf_token=auth.login.csrf_token, user=me_out(auth))


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_SIGNED_IN,
    dependencies=[changes_nothing()],
)
async def logout(request: Request, auth: CurrentAuth, db: Database) -> Response:
    return await _end_sessions(request, db, auth, [auth.login.token_hash])


@router.get("/sessions", responses=_SIGNED_IN, dependencies=READS)
async def list_sessions(
    request: Request, auth: CurrentAuth, db: Database
) -> list[schemas.LoginSessionInfo]:
    """The caller's live login sessions, newest first."""
    settings = request.app.state.settings
    logins = await db.scalars(
        select(LoginSession)
        .where(LoginSession.user_id == auth.user.id)
        .order_by(LoginSession.created_at.desc())
    )
    return [
        schemas.LoginSessionInfo(
            id=login.public_id,
            created_at=login.created_at,
            last_seen_at=login.last_seen_at,
            expires_at=expires_at(login, settings),
            current=login.token_hash == auth.login.token_hash,
        )
        for login in logins
        if is_live(login, settings)
    ]


@router.delete(
    "/sessions",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_SIGNED_IN,
    dependencies=[changes_nothing()],
)
async def delete_all_sessions(request: Request, auth: CurrentAuth, db: Database) -> Response:
    """Sign out everywhere: every session of the caller ends, this one too, with its streams."""
    hashes = await db.scalars(
        select(LoginSession.token_hash).where(LoginSession.user_id == auth.user.id)
    )
    return await _end_sessions(request, db, auth, list(hashes), everywhere=True)


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_SIGNED_IN, **_NOT_FOUND},
    dependencies=[changes_nothing()],
)
async def delete_session(
    session_id: str, request: Request, auth: CurrentAuth, db: Database
) -> Response:
    """End one of the caller's sessions (and its streams), e.g. a browser left signed in."""
    hashes = await db.scalars(
        select(LoginSession.token_hash).where(LoginSession.user_id == auth.user.id)
    )
    chosen = [h for h in hashes if h[:16] == session_id]
    if not chosen:
        not_found("session")
    return await _end_sessions(request, db, auth, chosen)


async def _end_sessions(
    request: Request,
    db: Database,
    auth: Auth,
    token_hashes: list[str],
    *,
    everywhere: bool = False,
) -> Response:
    await db.execute(delete(LoginSession).where(LoginSession.token_hash.in_(token_hashes)))
    await db.commit()
    # Their open streams end here and on every instance; a reconnect with an ended session
    # gets 401, while the user's other sessions carry on untouched. Everywhere: every stream
    # of the user (its subject), whatever session it has.
    updates = request.app.state.updates
    if everywhere:
        updates.close_streams("signed out", subject=str(auth.user.id))
    for token_hash in [] if everywhere else token_hashes:
        updates.close_streams("signed out", session=token_hash[:16])
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    await revocation_published(request, response)
    if auth.login.token_hash in token_hashes:
        response.delete_cookie(COOKIE_NAME, path="/")
    return response


@router.get("/me", responses=_SIGNED_IN, dependencies=READS)
async def get_me(auth: CurrentAuth) -> schemas.Me:
    return me_out(auth)


@router.get("/tenants/{tenant}/members", responses=ERRORS, dependencies=READS)
async def list_members(tenant: str, auth: CurrentAuth, db: Database) -> list[schemas.Member]:
    access = tenant_access(auth, tenant)
    rows = await db.execute(
        select(Membership, User)
        .join(User, Membership.user_id == User.id)
        .where(Membership.tenant_id == access.tenant_id)
        .order_by(User.id)
    )
    return [schemas.Member(user_id=u.id, email=u.email, name=u.name, role=m.role) for m, u in rows]


@router.post(
    "/tenants/{tenant}/members",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**ERRORS, **conflicts("Already a member of this tenant")},
    dependencies=INVITATIONS_CHANGED,
)
async def add_member(
    tenant: str, body: schemas.MemberAdd, auth: CurrentAuth, db: Database
) -> schemas.InvitationSent:
    """Invite someone by email; they join once they accept (`POST /api/invitations/{id}/accept`).

    The answer is the same whether or not a user has this email. Inviting again changes the
    role of the pending invitation.
    """
    access = tenant_access(auth, tenant)
    require_admin(auth, access.tenant_id)
    email = body.email.lower()
    member = await db.scalar(
        select(User.id)
        .join(Membership, Membership.user_id == User.id)
        .where(User.email == email, Membership.tenant_id == access.tenant_id)
    )
    if member is not None:  # one of this tenant's own members: the admin sees them anyway
        conflict(f"{email} is already a member of {tenant!r}")
    invitation = await db.scalar(
        select(Invitation).where(
            Invitation.tenant_id == access.tenant_id, Invitation.email == email
        )
    )
    if invitation is None:
        db.add(Invitation(tenant_id=access.tenant_id, email=email, role=body.role))
    else:
        invitation.role = body.role
    await db.flush()
    invitee = await db.scalar(select(User.id).where(User.email == email))
    if invitee is not None:  # told on their own stream only
        auth.audience.add(user_scope(invitee))
    await db.commit()
    return schemas.InvitationSent(tenant=access.slug, email=email, role=body.role, status="invited")


@router.get("/tenants/{tenant}/invitations", responses=ERRORS, dependencies=READS)
async def list_tenant_invitations(
    tenant: str, auth: CurrentAuth, db: Database
) -> list[schemas.PendingInvitation]:
    """The tenant's pending invitations (admins only)."""
    access = tenant_access(auth, tenant)
    require_admin(auth, access.tenant_id)
    invitations = await db.scalars(
        select(Invitation).where(Invitation.tenant_id == access.tenant_id).order_by(Invitation.id)
    )
    return [
        schemas.PendingInvitation(id=i.id, email=i.email, role=i.role, created_at=i.created_at)
        for i in invitations
    ]


@router.delete(
    "/tenants/{tenant}/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=ERRORS,
    dependencies=INVITATIONS_CHANGED,
)
async def revoke_invitation(
    tenant: str, invitation_id: int, auth: CurrentAuth, db: Database
) -> Response:
    access = tenant_access(auth, tenant)
    require_admin(auth, access.tenant_id)
    result = await db.execute(
        delete(Invitation).where(
            Invitation.id == invitation_id, Invitation.tenant_id == access.tenant_id
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        not_found("invitation")
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/invitations", responses=_SIGNED_IN, dependencies=READS)
async def list_invitations(auth: CurrentAuth, db: Database) -> list[schemas.Invitation]:
    """Invitations to the caller's email, oldest first."""
    rows = await db.execute(
        select(Invitation, Tenant)
        .join(Tenant, Invitation.tenant_id == Tenant.id)
        .where(Invitation.email == auth.user.email.lower())
        .order_by(Invitation.id)
    )
    return [
        schemas.Invitation(
            id=i.id, tenant=t.slug, tenant_name=t.name, role=i.role, created_at=i.created_at
        )
        for i, t in rows
    ]


@router.post(
    "/invitations/{invitation_id}/accept",
    responses={**_SIGNED_IN, **_NOT_FOUND, **conflicts("Already a member of this tenant")},
    dependencies=[
        changes(UpdateType.authentication, key=caller_id, audience=joined_audience),
    ],
)
async def accept_invitation(
    invitation_id: int, request: Request, response: Response, auth: CurrentAuth, db: Database
) -> schemas.TenantRole:
    """Join the tenant with the invited role; it comes last in the caller's tenants."""
    invitation, tenant = await _my_invitation(db, auth, invitation_id)
    await db.delete(invitation)
    if await db.get(Membership, (auth.user.id, tenant.id)) is not None:
        await db.commit()
        conflict(f"you are already a member of {tenant.slug!r}")
    db.add(
        Membership(
            user_id=auth.user.id, tenant_id=tenant.id, role=invitation.role, joined_at=utcnow()
        )
    )
    await db.flush()
    changed = await _membership_changed(request, db, auth.user.id)
    await db.commit()
    await changed.after_commit(db, response)
    return schemas.TenantRole(slug=tenant.slug, name=tenant.name, role=invitation.role)


@router.delete(
    "/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_SIGNED_IN, **_NOT_FOUND},
    dependencies=INVITATIONS_CHANGED,
)
async def decline_invitation(invitation_id: int, auth: CurrentAuth, db: Database) -> Response:
    invitation, tenant = await _my_invitation(db, auth, invitation_id)
    await db.delete(invitation)
    auth.audience.add(tenant_scope(tenant.slug))  # the inviting tenant's list
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _my_invitation(db: Database, auth: Auth, invitation_id: int) -> tuple[Invitation, Tenant]:
    if not 0 < invitation_id <= 2**31 - 1:
        not_found("invitation")
    row = (
        await db.execute(
            select(Invitation, Tenant)
            .join(Tenant, Invitation.tenant_id == Tenant.id)
            .where(Invitation.id == invitation_id, Invitation.email == auth.user.email.lower())
        )
    ).first()
    if row is None:
        not_found("invitation")
    first, second = row
    return first, second


_LAST_ADMIN = "a tenant needs at least one admin; promote someone else first"


@router.patch(
    "/tenants/{tenant}/members/{user_id}",
    responses={**ERRORS, **conflicts("The tenant's last admin")},
    dependencies=MEMBER_CHANGED,
)
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
    await _lock_tenant(db, access.tenant_id)
    membership, user = await _member(db, access.tenant_id, user_id)
    if membership.role != body.role:
        changed = await db.execute(
            update(Membership)
            .where(
                Membership.tenant_id == access.tenant_id,
                Membership.user_id == user_id,
                _keeps_an_admin(access.tenant_id, user_id, body.role),
            )
            .values(role=body.role)
            .execution_options(synchronize_session=False)
        )
        if not changed.rowcount:  # type: ignore[attr-defined]
            conflict(_LAST_ADMIN)
        db.expunge(membership)  # changed behind the ORM's back; not to be flushed
        done = await _membership_changed(request, db, user.id)
        await db.commit()
        await done.after_commit(db, response)
    return schemas.Member(user_id=user.id, email=user.email, name=user.name, role=body.role)


@router.delete(
    "/tenants/{tenant}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**ERRORS, **conflicts("The tenant's last admin")},
    dependencies=MEMBER_CHANGED,
)
async def remove_member(
    tenant: str, user_id: int, request: Request, auth: CurrentAuth, db: Database
) -> Response:
    access = tenant_access(auth, tenant)
    require_admin(auth, access.tenant_id)
    await _lock_tenant(db, access.tenant_id)
    membership, user = await _member(db, access.tenant_id, user_id)
    removed = await db.execute(
        delete(Membership)
        .where(
            Membership.tenant_id == access.tenant_id,
            Membership.user_id == user_id,
            _keeps_an_admin(access.tenant_id, user_id, None),
        )
        .execution_options(synchronize_session=False)
    )
    if not removed.rowcount:  # type: ignore[attr-defined]
        conflict(_LAST_ADMIN)
    db.expunge(membership)
    done = await _membership_changed(request, db, user.id)
    await db.commit()
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    await done.after_commit(db, response)
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
    first, second = row
    return first, second


async def _lock_tenant(db: Database, tenant_id: int) -> None:
    """PostgreSQL: hold the tenant's row until commit, so admin changes of one tenant run one
    after the other (each statement after it sees the previous change committed). SQLite
    ignores FOR UPDATE; there every write runs alone, and the guarded statement suffices."""
    await db.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())


def _keeps_an_admin(tenant_id: int, user_id: int, new_role: Role | None) -> Any:
    """A condition for the one statement that demotes or removes `user_id`: true unless it
    would leave the tenant without an admin. Checked by the database in the same statement
    as the write, so no other change can slip in between the count and the write."""
    others = aliased(Membership)
    another_admin = exists().where(
        others.tenant_id == tenant_id, others.user_id != user_id, others.role == Role.admin
    )
    if new_role is Role.admin:
        return true()
    return or_(Membership.role != Role.admin, another_admin)


class _MembershipChange:
    """Reauthorizes the user's streams again if a session began while the change was made."""

    def __init__(self, request: Request, user_id: int, known: set[str]) -> None:
        self.request, self.user_id, self.known = request, user_id, known

    async def after_commit(self, db: Database, response: Response) -> None:
        service = self.request.app.state.updates
        if set(await _session_ids(db, self.user_id)) - self.known:
            slugs = await tenant_slugs(db, self.user_id)  # now committed
            service.reauthorize(str(self.user_id), principal_for(self.user_id, slugs))
        await revocation_published(self.request, response)


async def _session_ids(db: Database, user_id: int) -> list[str]:
    hashes = await db.scalars(
        select(LoginSession.token_hash).where(LoginSession.user_id == user_id)
    )
    return [h[:16] for h in hashes]


async def _membership_changed(request: Request, db: Database, user_id: int) -> _MembershipChange:
    """Revoke or extend the streams of the user (every session: the subject is the user)
    after commit (the route declares who is told). A login committed meanwhile is caught by
    the returned step's `after_commit()`: its stream read the memberships before or after
    this change, and either way ends up with the new ones."""
    service = request.app.state.updates
    slugs = await tenant_slugs(db, user_id)  # as of this transaction
    sessions = await _session_ids(db, user_id)
    principal = principal_for(user_id, slugs)

    def reauthorize() -> None:
        service.reauthorize(str(user_id), principal)

    call_after_commit(db, reauthorize)
    return _MembershipChange(request, user_id, set(sessions))


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
