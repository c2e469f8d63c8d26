"""The tables: tenants, users, memberships and invitations, login sessions and login
throttles, projects, instances.

Tables with integer ids use SQLite's ``AUTOINCREMENT`` (``sqlite_autoincrement``): without it
SQLite hands the id of the newest deleted row to the next insert, and keys in invalidations,
replays and logs would then name a different object. PostgreSQL sequences never reuse ids.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import DateTime, Dialect, Enum, ForeignKey, String, TypeDecorator, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps in UTC, also on SQLite (which forgets the time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


class Role(enum.StrEnum):
    admin = "admin"
    member = "member"
    viewer = "viewer"


class InstanceStatus(enum.StrEnum):
    provisioning = "provisioning"
    running = "running"
    stopping = "stopping"
    stopped = "stopped"
    starting = "starting"
    deleting = "deleting"


#: what the simulated provider does next with an instance in a transitional status
NEXT_STATUS: dict[InstanceStatus, InstanceStatus | None] = {
    InstanceStatus.provisioning: InstanceStatus.running,
    InstanceStatus.starting: InstanceStatus.running,
    InstanceStatus.stopping: InstanceStatus.stopped,
    InstanceStatus.deleting: None,  # the row goes away
}


#: never reuse the id of a deleted row (SQLite; PostgreSQL's sequences never do)
NO_ID_REUSE = {"sqlite_autoincrement": True}


class Tenant(Base):
    __tablename__ = "tenants"
    __table_args__ = NO_ID_REUSE

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="tenant", cascade="all, delete-orphan"
    )


class User(Base):
    __tablename__ = "users"
    __table_args__ = NO_ID_REUSE

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(300))

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )


class Membership(Base):
    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=20))
    #: a user's tenants are listed (and the first is their default) in the order they joined
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships")
    tenant: Mapped[Tenant] = relationship(back_populates="memberships")


class LoginSession(Base):
    """One login. The cookie and the bearer token both carry its token; we store its hash."""

    __tablename__ = "login_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: last use, renewed at most every `Settings.session_renew_interval` (idle timeout)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship()

    @property
    def public_id(self) -> str:
        """How the user names this session (list, end one): a prefix of the token's hash,
        which says nothing about the token itself."""
        return self.token_hash[:16]


class Invitation(Base):
    """An admin asked someone to join a tenant; a membership once the invitee accepts."""

    __tablename__ = "invitations"
    __table_args__ = (UniqueConstraint("tenant_id", "email"), NO_ID_REUSE)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(200), index=True)
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tenant: Mapped[Tenant] = relationship()


class LoginThrottle(Base):
    """Failed logins per account (``account:<email>``) or client address (``address:<ip>``).

    In the database, not in the process: several portal instances share one database, and an
    attacker spreading guesses over them must meet the same counter.
    """

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("tenant_id", "name"), NO_ID_REUSE)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    tenant: Mapped[Tenant] = relationship()
    instances: Mapped[list[Instance]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True
    )


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("project_id", "name"), NO_ID_REUSE)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(63))
    flavor: Mapped[str] = mapped_column(String(40))
    image: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[InstanceStatus] = mapped_column(
        Enum(InstanceStatus, native_enum=False, length=20), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship(back_populates="instances")
