"""The database: engine, sessions, schema, and notify-after-commit.

Routers queue notifications on their session with `notify_after_commit()`; the session sends
them only once its transaction has committed and drops them on rollback. A failed request
therefore notifies no one, and a client that refetches on `invalidate` always sees the change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from refetch import UpdateService

from .config import Settings, async_database_url
from .models import Base

_PENDING = "refetch.pending"
_SERVICE = "refetch.service"
_CALLBACKS = "portal.after_commit"


class PortalSession(Session):
    """A sync Session (under AsyncSession) that carries notifications to send on commit."""


@event.listens_for(PortalSession, "after_commit")
def _after_commit(session: Session) -> None:
    # Callbacks first: a revocation (reauthorize) must take effect before the
    # notifications of the same transaction go out.
    for callback in session.info.pop(_CALLBACKS, ()):
        callback()
    pending = session.info.pop(_PENDING, None)
    service: UpdateService | None = session.info.get(_SERVICE)
    if not pending or service is None:
        return
    for type_, key, audience in pending:
        service.notify(type_, key, audience=audience)


@event.listens_for(PortalSession, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_CALLBACKS, None)


def call_after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback()` once this session's transaction has committed (never on rollback)."""
    session.info.setdefault(_CALLBACKS, []).append(callback)


def notify_after_commit(
    session: AsyncSession,
    type_: str,
    key: str | int | None = None,
    *,
    audience: Iterable[str] | None = None,
) -> None:
    """Queue `notify(type_, key, audience=...)` for when this session's transaction commits."""
    pending: list[tuple[str, str | None, frozenset[str] | None]] = session.info.setdefault(
        _PENDING, []
    )
    item = (
        type_,
        None if key is None else str(key),
        None if audience is None else frozenset(audience),
    )
    if item not in pending:
        pending.append(item)


def create_engine(settings: Settings) -> AsyncEngine:
    url = async_database_url(settings.database_url)
    kwargs: dict[str, Any] = {}
    if make_url(url).get_backend_name() == "postgresql":
        if settings.database_schema:
            kwargs["connect_args"] = {"server_settings": {"search_path": settings.database_schema}}
        engine = create_async_engine(url, pool_pre_ping=True, **kwargs)
    else:
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # foreign keys make ON DELETE CASCADE work; WAL lets readers run beside a writer
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

    return engine


def create_sessionmaker(
    engine: AsyncEngine, service: UpdateService
) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        engine,
        expire_on_commit=False,
        sync_session_class=PortalSession,
        info={_SERVICE: service},
    )


async def create_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
