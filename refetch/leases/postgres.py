"""``PostgresLease``: leadership of one poller as a PostgreSQL advisory lock, plus its snapshot.

A session-level ``pg_try_advisory_lock`` on a dedicated connection; the key is derived from
the poller's name. The lock lives exactly as long as that session, so a lost connection is a
lost lease, and a leader that dies is replaced at once. The snapshot is a row in a table
(``refetch_pollers``); the signal a ``NOTIFY`` that the same connection ``LISTEN``s to.
asyncpg is imported when the lease first connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

from ..backends._urls import check_name, postgres_dsn, redact, require_driver

logger = logging.getLogger("refetch.worker")


def advisory_key(namespace: str, name: str) -> int:
    """The bigint of a poller's advisory lock: stable across instances and restarts."""
    digest = hashlib.blake2b(f"refetch:{namespace}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lease_schema_sql(table: str = "refetch_pollers") -> str:
    """The SQL that creates the snapshot table of ``PostgresLease(table=...)``, for a migration
    (then pass ``create_tables=False``, or ``?create_tables=false`` in the backend URL)."""
    return (
        f'CREATE TABLE IF NOT EXISTS "{check_name("table name", table)}" (\n'
        "    name text PRIMARY KEY,\n"
        "    snapshot text NOT NULL,\n"
        "    updated_at timestamptz NOT NULL DEFAULT now());\n"
    )


class PostgresLease:
    """Leadership of one poller as a PostgreSQL advisory lock, plus its shared snapshot.

    Holds one dedicated connection (``application_name`` ``refetch lease <name>``) for the
    lock, the ``LISTEN`` and the snapshot; the lock key is ``advisory_key(table, name)``.
    The snapshot is a row of ``table`` (created if missing); the change signal is a
    ``NOTIFY`` on the channel named like the table, with the poller's name as payload.
    """

    def __init__(
        self,
        name: str,
        dsn: str,
        *,
        table: str = "refetch_pollers",
        timeout: float = 5.0,
        create_tables: bool = True,
    ) -> None:
        require_driver("asyncpg", "postgres", "PostgresLease")
        dsn = postgres_dsn(dsn)
        self.name = name
        self.table = check_name("table name", table)
        self.channel = self.table
        self.key = advisory_key(self.table, name)
        self.url = redact(dsn)
        self.timeout = timeout
        self.create_tables = create_tables
        self._dsn = dsn
        self._conn: Any = None
        self._held = False
        self._signal = asyncio.Event()
        t = f'"{self.table}"'
        self._create = lease_schema_sql(self.table)
        self._upsert = f"""WITH u AS (
                INSERT INTO {t} (name, snapshot) VALUES ($1, $2)
                ON CONFLICT (name) DO UPDATE SET snapshot = EXCLUDED.snapshot, updated_at = now()
                RETURNING 1)
            SELECT pg_notify($3, $1) FROM u WHERE $4"""
        self._select = f"SELECT snapshot FROM {t} WHERE name = $1"

    @property
    def pid(self) -> int | None:
        """The server process of the lease's connection (``pg_terminate_backend`` ends it)."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else int(conn.get_server_pid())

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload == self.name:
            self._signal.set()

    def _on_terminated(self, _conn: object) -> None:
        self._held = False

    async def _connection(self) -> Any:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        await self._drop()
        import asyncpg

        conn = await asyncpg.connect(
            self._dsn,
            timeout=self.timeout,
            command_timeout=self.timeout,
            server_settings={"application_name": f"refetch lease {self.name}"[:63]},
        )
        try:
            async with conn.transaction():
                # instances start together: one creates the table at a time
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.table)
                if self.create_tables:
                    await conn.execute(self._create)
            await conn.add_listener(self.channel, self._on_notify)
            conn.add_termination_listener(self._on_terminated)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self._held = False
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._held = False
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), self.timeout)
            if not conn.is_closed():
                conn.terminate()

    async def acquire(self) -> bool:
        if self._held:
            return await self.renew()
        conn = await self._connection()
        self._held = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key))
        return self._held

    async def renew(self) -> bool:
        conn = self._conn
        if not self._held or conn is None or conn.is_closed():
            await self._drop()
            return False
        try:
            await conn.fetchval("SELECT 1")  # the session lives, so the lock does
        except Exception as exc:
            logger.debug("lease %s: lost the connection: %r", self.name, exc)
            await self._drop()
            return False
        return True

    async def release(self) -> None:
        conn = self._conn
        if not self._held or conn is None or conn.is_closed():
            return
        self._held = False
        # wake the followers: one of them takes over now instead of at its next cycle
        await conn.execute(
            "SELECT pg_advisory_unlock($1), pg_notify($2, $3)", self.key, self.channel, self.name
        )

    async def publish(self, snapshot: str, *, changed: bool) -> bool:
        conn = self._conn
        if not self._held or conn is None or conn.is_closed():
            return False
        # on the lock's own session: if the lock is gone, so is the connection
        await conn.execute(self._upsert, self.name, snapshot, self.channel, changed)
        return True

    async def snapshot(self) -> str | None:
        conn = await self._connection()
        value = await conn.fetchval(self._select, self.name)
        return None if value is None else str(value)

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._signal.wait()
        self._signal.clear()

    async def aclose(self) -> None:
        await self._drop()
