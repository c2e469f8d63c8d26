"""Request and response bodies: the shapes the TypeScript client is generated from."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .models import InstanceStatus, Role

# Printable, trimmed, no control characters (PostgreSQL rejects NUL in text; 422 beats 500).
Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
Slug = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z0-9-]+$")]
# Instance names become host names: DNS-label rules.
HostName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(BaseModel):
    detail: str


class TooManyRequests(BaseModel):
    """`429`: also in the `Retry-After` header."""

    detail: str
    retry_after: int = Field(description="Seconds to wait before trying again.")


# -- authentication ------------------------------------------------------------------------


class LoginRequest(Strict):
    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class TenantRole(BaseModel):
    slug: str
    name: str
    role: Role


class Me(BaseModel):
    id: int
    email: str
    name: str
    tenants: list[TenantRole]
    csrf_token: str = Field(description="Send as X-CSRF-Token on mutations that use the cookie.")


class LoginResponse(BaseModel):
    token: str = Field(description="For Authorization: Bearer <token>.")
    csrf_token: str
    user: Me


class Member(BaseModel):
    user_id: int
    email: str
    name: str
    role: Role


class MemberAdd(Strict):
    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200)]
    role: Role = Role.member


class InvitationSent(BaseModel):
    """The same answer whether or not anyone has this email: it tells nobody who exists."""

    tenant: str
    email: str
    role: Role
    status: str = Field(description="Always `invited`: the invitee joins by accepting.")


class Invitation(BaseModel):
    """An invitation to the caller: accept it to join the tenant."""

    id: int
    tenant: str
    tenant_name: str
    role: Role
    created_at: datetime


class PendingInvitation(BaseModel):
    """An invitation of a tenant, as its admins see it."""

    id: int
    email: str
    role: Role
    created_at: datetime


class LoginSessionInfo(BaseModel):
    """One of the caller's login sessions."""

    id: str = Field(description="For DELETE /api/sessions/{session_id}.")
    created_at: datetime
    last_seen_at: datetime = Field(description="Recorded at most once a minute.")
    expires_at: datetime = Field(description="Unless used before (idle timeout); never later.")
    current: bool = Field(description="The session of this request.")


class MemberUpdate(Strict):
    role: Role


# -- projects -------------------------------------------------------------------------------


class ProjectCreate(Strict):
    name: Name
    tenant: Slug | None = Field(default=None, description="Default: the user's first tenant.")


class ProjectUpdate(Strict):
    name: Name


class Project(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    tenant: str
    name: str
    created_at: datetime
    updated_at: datetime


# -- compute --------------------------------------------------------------------------------


class FlavorName(StrEnum):
    """The flavors the portal offers (GET /api/flavors): a fixed set, so an enum."""

    s1_small = "s1.small"
    s1_medium = "s1.medium"
    m1_large = "m1.large"
    c1_xlarge = "c1.xlarge"


class Flavor(BaseModel):
    name: FlavorName
    vcpus: int
    memory_gb: int


class InstanceCreate(Strict):
    name: HostName
    flavor: FlavorName
    image: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        default=None, description="An id from GET /api/images (409 when not in the catalog)."
    )


class Instance(BaseModel):
    id: int
    project_id: int
    tenant: str
    name: str
    flavor: str
    image: str | None
    status: InstanceStatus
    created_at: datetime
    updated_at: datetime


# -- polled data ------------------------------------------------------------------------------


class Polled(BaseModel):
    """What the portal last fetched from an external API, and how fresh it is."""

    fetched_at: datetime | None = Field(description="When the API last confirmed the data.")
    changed_at: datetime | None
    stale: bool = Field(description="The latest poll failed: the data may be outdated.")
    error: str | None = Field(description="Why the latest poll failed.")


class Progress(Polled):
    value: float | None = Field(description="0-100; null until the first successful poll.")
    phase: str | None = None


class Image(BaseModel):
    id: str
    name: str
    os: str
    version: str
    size_gb: float
    status: str


class Images(Polled):
    images: list[Image]


class Cluster(BaseModel):
    name: str
    tenant: str
    region: str
    kubernetes_version: str
    nodes: int
    status: str


class Clusters(Polled):
    clusters: list[Cluster]
