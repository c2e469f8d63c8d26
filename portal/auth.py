"""Who is calling: session cookie (browsers) or bearer token (everything else), plus CSRF.

A login creates a `LoginSession` row with a random token; the database keeps only its hash.
The cookie carries the token signed with the session secret (HttpOnly, SameSite=Lax); the
login response also returns the bare token for `Authorization: Bearer`. Every request looks
the session and the memberships up again, so a removed member loses access at once; a session
past its idle or absolute lifetime (portal/sessions.py) is refused like an unknown one.

CSRF: SameSite=Lax keeps the cookie off cross-site POSTs, and every cookie-authenticated
mutation must also send `X-CSRF-Token` (from the login response or `GET /api/me`), which a
cross-site form cannot set. Bearer requests carry no ambient credential and need no token.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from itsdangerous import BadSignature, Signer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection
from starlette.types import Scope

from refetch import Principal

from .config import Settings
from .models import LoginSession, Membership, Role, Tenant, User, utcnow
from .sessions import is_live, needs_renewal
from .updates import principal_for

#: where a request that authenticated leaves a mark for the middleware (Refetch-Cursor)
AUTHENTICATED = "portal.authenticated"

COOKIE_NAME = "portal_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class TenantAccess:
    """Plain values, not ORM objects: they stay readable after a failed flush."""

    tenant_id: int
    slug: str
    name: str
    role: Role


@dataclass(frozen=True)
class Auth:
    user: User
    login: LoginSession
    via: str  # "cookie" or "bearer"
    tenants: dict[str, TenantAccess]  # by slug, in the order the user joined them
    #: Who hears what this request changes (its routes' `changes(audience=caller_audience)`):
    #: the tenants the caller was cleared to write in (`access.require_writer` /
    #: `require_admin` add them), and anyone else the route names (e.g. an invitee).
    audience: set[str] = field(default_factory=set, compare=False)

    def access(self, slug: str) -> TenantAccess | None:
        return self.tenants.get(slug)

    @property
    def tenant_ids(self) -> list[int]:
        return [a.tenant_id for a in self.tenants.values()]

    def slug_of(self, tenant_id: int) -> str | None:
        for slug, access in self.tenants.items():
            if access.tenant_id == tenant_id:
                return slug
        return None

    def role_in(self, tenant_id: int) -> Role | None:
        for access in self.tenants.values():
            if access.tenant_id == tenant_id:
                return access.role
        return None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def signer(secret: str) -> Signer:
    return Signer(secret, salt="portal.session")


def credentials(conn: HTTPConnection) -> tuple[str, str] | None:
    """The raw session token and how it came: bearer header first, then the cookie."""
    authorization = conn.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), "bearer"
    cookie = conn.cookies.get(COOKIE_NAME)
    if cookie:
        try:
            return signer(conn.app.state.secret).unsign(cookie).decode(), "cookie"
        except (BadSignature, UnicodeDecodeError):
            return None
    return None


async def load_auth(db: AsyncSession, token: str, via: str, settings: Settings) -> Auth | None:
    """The caller, if the token names a live session; renews the session's idle lifetime.

    The renewal commits `db` (nothing else is pending yet when a request authenticates).
    """
    if len(token) > 200:
        return None
    login = await db.get(LoginSession, hash_token(token))
    now = utcnow()
    if login is None or not is_live(login, settings, now):
        return None
    user = await db.get(User, login.user_id)
    if user is None:
        return None
    rows = await db.execute(
        select(Membership, Tenant)
        .join(Tenant, Membership.tenant_id == Tenant.id)
        .where(Membership.user_id == user.id)
        .order_by(Membership.joined_at, Tenant.id)
    )
    tenants = {t.slug: TenantAccess(t.id, t.slug, t.name, m.role) for m, t in rows}
    if needs_renewal(login, settings, now):
        await db.execute(
            update(LoginSession)
            .where(LoginSession.token_hash == login.token_hash)
            .values(last_seen_at=now)
        )
        await db.commit()
    return Auth(user, login, via, tenants)


async def tenant_slugs(db: AsyncSession, user_id: int) -> list[str]:
    rows = await db.scalars(
        select(Tenant.slug)
        .join(Membership, Membership.tenant_id == Tenant.id)
        .where(Membership.user_id == user_id)
    )
    return list(rows)


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    # Leaving the block without commit rolls back: a failed request writes nothing.
    async with request.app.state.sessionmaker() as session:
        yield session


Database = Annotated[AsyncSession, Depends(get_db)]


async def current_auth(request: Request, db: Database) -> Auth:
    found = credentials(request)
    settings = request.app.state.settings
    auth = None if found is None else await load_auth(db, *found, settings)
    if auth is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "not signed in: log in with POST /api/login, then send the session cookie "
            "or Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if auth.via == "cookie" and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not secrets.compare_digest(sent.encode(), auth.login.csrf_token.encode()):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"CSRF check failed: send the {CSRF_HEADER} header from GET /api/me",
            )
    mark_authenticated(request)
    request.state.auth = auth
    return auth


def mark_authenticated(conn: HTTPConnection) -> None:
    """Let the middleware know this response went to a signed-in caller."""
    conn.scope.setdefault("state", {})[AUTHENTICATED] = True


def is_authenticated(scope: Scope) -> bool:
    return bool(scope.get("state", {}).get(AUTHENTICATED))


CurrentAuth = Annotated[Auth, Depends(current_auth)]


async def stream_principal(request: Request) -> Principal:
    """The update stream's dependency: `current_auth` on a session of its own.

    A dependency with `yield` (`get_db`) is closed only when the response ends, which for the
    stream is hours later: the stream would hold a database connection all that time. So the
    session here is opened and closed around the look-up. Same cookie or bearer token, same
    `401` as every route.
    """
    async with request.app.state.sessionmaker() as db:
        auth = await current_auth(request, db)
    return principal_for(auth.user.id, list(auth.tenants), auth.login.public_id)


StreamPrincipal = Annotated[Principal, Depends(stream_principal)]
