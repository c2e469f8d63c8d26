"""The database: engine, sessions, schema (and its additive migrations), notify-after-commit.

Routes declare what they change (`refetch.routes`), notified after they answered 2xx. Code a
declaration cannot describe (the compute provider, revocations) queues on its session with
`notify_after_commit()` / `call_after_commit()`; the session runs them only once its transaction
has committed and drops them on rollback. A failed request therefore notifies no one, and a
client that refetches on `invalidate` always sees the change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateIndex, CreateTable

from refetch import UpdateService

from .config import Settings, async_database_url
from .models import Base

logger = logging.getLogger("portal")

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
    """New tables are created; tables of an older portal are brought up to date in place."""
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.run_sync(_add_columns)
    if engine.dialect.name == "sqlite":
        async with engine.connect() as conn:
            await conn.run_sync(_sqlite_autoincrement)


#: Columns added since the first release: (table, column) -> the value existing rows get.
#: Memberships from before `joined_at` keep their old order (by tenant id, the tiebreak).
ADDED_COLUMNS: dict[tuple[str, str], Callable[[Table], Any]] = {
    ("memberships", "joined_at"): lambda _table: datetime(1970, 1, 1, tzinfo=UTC),
    ("login_sessions", "last_seen_at"): lambda table: table.c.created_at,
}


def _add_columns(conn: Connection) -> None:
    present = {
        name: {c["name"] for c in inspect(conn).get_columns(name)}
        for name in {table for table, _ in ADDED_COLUMNS}
    }
    for (name, column), backfill in ADDED_COLUMNS.items():
        if column in present[name]:
            continue
        table = Base.metadata.tables[name]
        ddl_type = table.c[column].type.compile(dialect=conn.dialect)
        # IF NOT EXISTS: instances starting together on one PostgreSQL both get here
        guard = "IF NOT EXISTS " if conn.dialect.name == "postgresql" else ""
        conn.execute(text(f"ALTER TABLE {name} ADD COLUMN {guard}{column} {ddl_type}"))
        conn.execute(
            table.update().where(table.c[column].is_(None)).values({column: backfill(table)})
        )
        logger.info("database: added %s.%s", name, column)


def _sqlite_autoincrement(conn: Connection) -> None:
    """Rebuild SQLite tables created without AUTOINCREMENT (by an older portal).

    SQLite cannot add it in place: the table is copied into a new one (the documented
    "12-step" ALTER), with foreign keys off so the copy cascades nothing. Ids deleted before
    the rebuild may still come back once; none after it.
    """
    stale = []
    for table in Base.metadata.sorted_tables:
        if not table.kwargs.get("sqlite_autoincrement"):
            continue
        sql = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table.name,)
        ).scalar()
        if sql is not None and "AUTOINCREMENT" not in sql.upper():
            stale.append(table)
    conn.commit()
    if not stale:
        return
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        for table in stale:
            temporary = f"_rebuild_{table.name}"
            create = str(CreateTable(table).compile(dialect=conn.dialect))
            create = create.replace(f"CREATE TABLE {table.name} ", f"CREATE TABLE {temporary} ", 1)
            columns = ", ".join(c.name for c in table.columns)
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {temporary}")
            conn.exec_driver_sql(create)
            conn.exec_driver_sql(
                f"INSERT INTO {temporary} ({columns}) SELECT {columns} FROM {table.name}"
            )
            conn.exec_driver_sql(f"DROP TABLE {table.name}")
            conn.exec_driver_sql(f"ALTER TABLE {temporary} RENAME TO {table.name}")
            for index in table.indexes:
                conn.execute(CreateIndex(index))
            logger.info(
                "database: rebuilt %s with AUTOINCREMENT (ids are never reused)", table.name
            )
        conn.commit()
    finally:
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
