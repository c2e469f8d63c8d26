"""PostgreSQL: an updates table for global positions and replay, LISTEN/NOTIFY to wake readers.

Each update is a row. A notify issued inside the app's own transaction
(``notify_in_transaction``) is a row plus a ``pg_notify`` in that transaction: both
become visible on commit and vanish on rollback, so clients never hear of a change
that did not happen.

Ordering: a ``bigserial`` id is taken at INSERT, but transactions commit in another
order, so a reader that followed ids could pass id 11 before id 10 commits and never
see 10. Rows therefore carry the inserting transaction's id (``xid8``) and readers take
them in ``(xid, id)`` order, only below the oldest transaction still running
(``pg_snapshot_xmin``): no row can appear behind a position once it was read. The
price: a long-running writing transaction anywhere in the database holds delivery back
until it ends (readers poll every ``poll_interval`` for this case).
"""

from __future__ import annotations

import asyncio
import enum
import secrets
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from .._codec import encode_entry
from .._exceptions import BackendUnavailable, ConfigurationError
from .._update import TypesSpec, Update, declared_types, make_update
from ._base import Backend, Channel, Entry, StreamGap
from ._urls import (
    check_name,
    postgres_dsn,
    redact,
    require_driver,
    split_options,
)

# Position = xid * 10**19 + id: ids are bigints (< 9.3e18), so this keeps the
# (xid, id) order in one int that still reads as both numbers.
_ID = 10**19


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _split(position: int) -> tuple[int, int]:
    return position // _ID, position % _ID


class _Sql:
    def __init__(self, table: str) -> None:
        t, meta = _quote(table), _quote(f"{table}_meta")
        self.create = [
            f"""CREATE TABLE IF NOT EXISTS {t} (
                id bigserial PRIMARY KEY,
                xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
                payload text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now())""",
            f"CREATE INDEX IF NOT EXISTS {_quote(table + '_xid_id')} ON {t} (xid, id)",
            f"""CREATE TABLE IF NOT EXISTS {meta} (
                epoch text NOT NULL,
                dropped_xid xid8 NOT NULL DEFAULT '0',
                dropped_id bigint NOT NULL DEFAULT 0)""",
        ]
        self.init_epoch = (
            f"INSERT INTO {meta} (epoch) SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM {meta})"
        )
        self.epoch = f"SELECT epoch FROM {meta} LIMIT 1"
        self.insert = f"""WITH
                r AS (INSERT INTO {t} (payload) SELECT unnest($1::text[]) RETURNING id, xid),
                n AS (SELECT pg_notify($2, ''))
            SELECT r.xid::text AS xid, r.id FROM r, n ORDER BY r.id"""
        self.insert_one = f"""WITH r AS (INSERT INTO {t} (payload) VALUES ($1) RETURNING id)
            SELECT pg_notify($2, '') FROM r"""
        self.insert_one_named = f"""WITH
                r AS (INSERT INTO {t} (payload) VALUES (:payload) RETURNING id)
            SELECT pg_notify(:channel, '') FROM r"""
        self.head = f"SELECT xid::text AS xid, id FROM {t} ORDER BY xid DESC, id DESC LIMIT 1"
        # One round trip gives the trim mark and the next rows, in one snapshot.
        self.read = f"""SELECT m.dropped_xid::text AS dxid, m.dropped_id AS did,
                r.xid, r.id, r.payload
            FROM (SELECT * FROM {meta} LIMIT 1) m LEFT JOIN LATERAL (
                SELECT xid::text AS xid, id, payload FROM {t}
                WHERE (xid, id) > ($1::xid8, $2::bigint)
                  AND (xid, id) <= ($3::xid8, $4::bigint)
                  AND xid < pg_snapshot_xmin(pg_current_snapshot())
                ORDER BY xid, id LIMIT $5) r ON true
            ORDER BY r.xid::xid8, r.id"""
        self.trim = f"""WITH cut AS (
                SELECT xid, id FROM {t} ORDER BY xid DESC, id DESC OFFSET $1 LIMIT 1),
            d AS (DELETE FROM {t} USING cut WHERE ({t}.xid, {t}.id) <= (cut.xid, cut.id))
            UPDATE {meta} SET dropped_xid = cut.xid, dropped_id = cut.id FROM cut
            WHERE (cut.xid, cut.id) > ({meta}.dropped_xid, {meta}.dropped_id)"""


_MAX = 2**63 - 1


def schema_sql(table: str = "refetch_updates") -> str:
    """The SQL that creates the tables of ``PostgresBackend(table=...)``, for a migration.

    It is what the backend runs at start (idempotent: ``IF NOT EXISTS``), so a migration
    and a backend that creates its own tables build the same schema.
    """
    statements = _Sql(check_name("table name", table)).create
    return "".join(
        "\n    ".join(line.strip() for line in s.splitlines()) + ";\n" for s in statements
    )


class PostgresBackend(Backend):
    """An updates table (``table``, plus ``<table>_meta``) and a NOTIFY channel.

    ``PostgresBackend("postgresql://user@host/db")`` opens its own asyncpg pool;
    ``PostgresBackend(pool=app_pool)`` uses one the app has (the listener then holds
    one of its connections). The table keeps the newest ``max_entries`` rows. URL
    query parameters ``table``, ``channel`` and ``max_entries`` set the same options.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: Any = None,
        table: str = "refetch_updates",
        channel: str | None = None,
        max_entries: int = 100_000,
        poll_interval: float = 1.0,
        create_tables: bool = True,
    ) -> None:
        if (dsn is None) == (pool is None):
            raise ConfigurationError("give PostgresBackend a dsn or a pool, not both")
        options: dict[str, str] = {}
        if dsn is not None:
            require_driver("asyncpg", "postgres", "PostgresBackend")
            dsn, options = split_options(
                postgres_dsn(dsn), ("table", "channel", "max_entries", "create_tables")
            )
        self.table = check_name("table name", options.get("table", table))
        self.channel = options.get("channel", channel or self.table)
        self.max_entries = int(options.get("max_entries", max_entries))
        if self.max_entries < 1:
            raise ConfigurationError("max_entries must be >= 1")
        if poll_interval <= 0:
            raise ConfigurationError("poll_interval must be > 0 seconds")
        self.poll_interval = poll_interval
        flag = options.get("create_tables", "true" if create_tables else "false").lower()
        if flag not in ("true", "false", "1", "0"):
            raise ConfigurationError(f"create_tables={flag!r}: use true or false")
        self.create_tables = flag in ("true", "1")
        self._dsn = dsn
        self._pool = pool
        self._owned = pool is None
        self.url = redact(dsn) if dsn is not None else "postgresql (pool given by the app)"
        self._sql = _Sql(self.table)
        self._published = 0
        self._trim_every = max(1, self.max_entries // 10)
        # An idle listener polls at least this often: each poll is a sign of life.
        self.liveness = min(poll_interval, 0.5)

    async def connect(self) -> str:
        try:
            if self._pool is None:
                import asyncpg

                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=1, max_size=4, timeout=5, command_timeout=30
                )
            async with self._pool.acquire() as conn, conn.transaction():
                # Several instances start at once: one creates the tables at a time.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.table)
                if self.create_tables:
                    for statement in self._sql.create:
                        await conn.execute(statement)
                await conn.execute(self._sql.init_epoch, secrets.token_hex(4))
                epoch = await conn.fetchval(self._sql.epoch)
        except Exception as exc:
            if type(exc).__name__ == "UndefinedTableError" and not self.create_tables:
                raise BackendUnavailable(
                    f"the tables {self.table} and {self.table}_meta are missing in {self.url}: "
                    "create them with refetch.backends.postgres.schema_sql() in a migration "
                    f"(docs/scaling.md), or drop create_tables=False ({exc})"
                ) from exc
            raise BackendUnavailable(f"cannot reach PostgreSQL at {self.url}: {exc}") from exc
        return str(epoch)

    async def head(self) -> int:
        row = await self._pool.fetchrow(self._sql.head)
        return 0 if row is None else int(row["xid"]) * _ID + row["id"]

    async def append(self, payloads: Sequence[bytes]) -> list[int]:
        rows = await self._pool.fetch(
            self._sql.insert, [p.decode() for p in payloads], self.channel
        )
        self._published += len(rows)
        if self._published >= self._trim_every:
            self._published = 0
            await self._pool.execute(self._sql.trim, self.max_entries)
        return [int(r["xid"]) * _ID + r["id"] for r in rows]

    async def _fetch(self, conn: Any, after: int, upto: str, limit: int) -> tuple[int, list[Entry]]:
        xid, id_ = _split(after)
        upto_xid, upto_id = (_MAX, _MAX) if upto == "" else _split(int(upto))
        rows = await conn.fetch(self._sql.read, xid, id_, upto_xid, upto_id, limit, timeout=30)
        if not rows:
            raise BackendUnavailable(f"the table {self.table}_meta in {self.url} is empty")
        dropped = int(rows[0]["dxid"]) * _ID + rows[0]["did"]
        entries = [
            Entry(int(r["xid"]) * _ID + r["id"], r["payload"].encode())
            for r in rows
            if r["id"] is not None
        ]
        return dropped, entries

    async def read(self, after: int) -> AsyncIterator[list[Entry]]:
        wake = asyncio.Event()

        def on_notify(*_: object) -> None:
            wake.set()

        conn = await self._pool.acquire()
        try:
            await conn.add_listener(self.channel, on_notify)
            conn.add_termination_listener(on_notify)
            read_since_trim = 0
            while True:
                wake.clear()
                dropped, batch = await self._fetch(conn, after, "", 1000)
                if after < dropped:
                    raise StreamGap(f"table {self.table} was trimmed past {after}")
                if batch:
                    after = batch[-1].position
                    read_since_trim += len(batch)
                    if read_since_trim >= self._trim_every:
                        read_since_trim = 0
                        await conn.execute(self._sql.trim, self.max_entries, timeout=30)
                    yield batch
                    continue
                if conn.is_closed():
                    raise ConnectionError(f"lost the LISTEN connection to {self.url}")
                yield []  # nothing new, but the query answered: alive
                # A NOTIFY wakes us at once; the timeout covers rows held back by an
                # older open transaction and a connection that died silently.
                try:
                    async with asyncio.timeout(self.liveness):
                        await wake.wait()
                except TimeoutError:
                    pass
        finally:
            conn.remove_termination_listener(on_notify)
            # Bounded: the connection may be the one that stalled (the listener gave up
            # on it), and UNLISTEN or the pool's reset would wait on it for ever.
            try:
                async with asyncio.timeout(1.0):
                    if not conn.is_closed():
                        await conn.remove_listener(self.channel, on_notify)
                    await self._pool.release(conn, timeout=1.0)
            except Exception:
                conn.terminate()
                await self._pool.release(conn)

    async def replay(self, after: int, upto: int) -> list[Entry] | None:
        entries: list[Entry] = []
        async with self._pool.acquire() as conn:
            while True:
                dropped, batch = await self._fetch(conn, after, str(upto), 5000)
                if after < dropped:
                    return None
                entries += batch
                if len(batch) < 5000:
                    return entries
                after = batch[-1].position

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1", timeout=10)

    async def aclose(self) -> None:
        if self._owned and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def side_channel(self, name: str) -> Channel:
        return PostgresChannel(self, f"{self.table}_{name}")


class PostgresChannel(Channel):
    """``pg_notify`` / ``LISTEN`` on ``<table>_<name>``; the listener holds one connection of
    the backend's pool. NOTIFY payloads are at most 8000 bytes."""

    #: A LISTEN connection silent this long is asked ``SELECT 1``.
    SILENCE = 5.0

    def __init__(self, backend: PostgresBackend, name: str) -> None:
        self._backend = backend
        self.name = check_name("channel name", name[:63])
        self.max_payload = 7900

    async def publish(self, payload: bytes) -> None:
        await self._backend._pool.execute(
            "SELECT pg_notify($1, $2)", self.name, payload.decode(), timeout=5
        )

    async def listen(self) -> AsyncIterator[bytes]:
        pool = self._backend._pool
        heard: asyncio.Queue[bytes] = asyncio.Queue()

        def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            heard.put_nowait(payload.encode())

        conn = await pool.acquire()
        try:
            await conn.add_listener(self.name, on_notify)
            yield b""
            while True:
                try:
                    async with asyncio.timeout(self.SILENCE):
                        payload = await heard.get()
                except TimeoutError:
                    if conn.is_closed():
                        lost = f"lost the LISTEN connection to {self._backend.url}"
                        raise ConnectionError(lost) from None
                    await conn.fetchval("SELECT 1", timeout=5)
                    continue
                yield payload
        finally:
            try:
                async with asyncio.timeout(1.0):
                    if not conn.is_closed():
                        await conn.remove_listener(self.name, on_notify)
                    await pool.release(conn, timeout=1.0)
            except Exception:
                conn.terminate()
                await pool.release(conn)


#: What ``types=`` accepts: the service, its declared types, or the enum they came from.
DeclaredTypes = TypesSpec


def _update(
    who: str,
    update_type: str | enum.Enum,
    key: str | int | None,
    audience: Iterable[str] | str | None,
    types: DeclaredTypes | None,
) -> Update:
    """The update to write, after the checks ``notify()`` makes: a typo must raise here,
    since nothing downstream would notice that no client ever hears it."""
    if isinstance(update_type, enum.Enum):
        name = str(update_type.value)
    elif isinstance(update_type, str):
        name = update_type
        if types is None:
            raise ConfigurationError(
                f"{who}({update_type!r}): pass types= (your UpdateService, its types or your "
                "enum) so that a misspelt type raises here instead of notifying no one, or "
                "pass an enum member"
            )
    else:
        raise ConfigurationError(
            f"{who}: the update type is a str or an enum member, not {update_type!r}"
        )
    if key is not None and (isinstance(key, bool) or not isinstance(key, str | int)):
        raise ConfigurationError(f"{who}({name!r}): key is a str or an int, not {key!r}")
    return make_update(
        name, key, audience, known=None if types is None else frozenset(declared_types(types))
    )


async def notify_in_transaction(
    conn: Any,
    update_type: str | enum.Enum,
    key: str | int | None = None,
    *,
    types: DeclaredTypes | None = None,
    audience: Iterable[str] | str | None = None,
    table: str = "refetch_updates",
    channel: str | None = None,
) -> None:
    """Notify from inside the caller's asyncpg transaction: delivered only on commit.

    ``conn`` is the asyncpg connection the transaction runs on. The update is a row
    in the updates table plus a ``pg_notify``; a rollback takes both back. A type given
    as a string is checked against ``types`` (the ``UpdateService``, its declared types
    or their enum; required then): a typo raises ``UnknownUpdateType``, as ``notify()``
    does. An enum member needs no ``types``.
    """
    sql = _Sql(check_name("table name", table))
    update = _update("notify_in_transaction", update_type, key, audience, types)
    await conn.execute(sql.insert_one, encode_entry(update).decode(), channel or table)


async def notify_in_sqlalchemy(
    conn: Any,
    update_type: str | enum.Enum,
    key: str | int | None = None,
    *,
    types: DeclaredTypes | None = None,
    audience: Iterable[str] | str | None = None,
    table: str = "refetch_updates",
    channel: str | None = None,
) -> None:
    """``notify_in_transaction`` for an SQLAlchemy ``AsyncConnection`` (or ``AsyncSession``)."""
    from sqlalchemy import text

    sql = _Sql(check_name("table name", table))
    update = _update("notify_in_sqlalchemy", update_type, key, audience, types)
    await conn.execute(
        text(sql.insert_one_named),
        {"payload": encode_entry(update).decode(), "channel": channel or table},
    )
