"""Leases for pollers: one instance polls an API, the others serve what it shares.

``poller(..., lease=lease_from_url(url, name))`` (or ``with_leases(pollers, url)``) takes the
same URL as the backend. Both leases are `SharedLease`s: besides leadership they carry the
leader's snapshot (a JSON text, see ``refetch._polling.worker``) and a "changed" signal
to followers.

- ``RedisLease``: ``SET <lease> <token> NX PX <ttl>``; renew, release and publish are Lua
  compare-and-sets on the random token, so an instance whose lease expired can neither
  extend, delete nor overwrite another's. The snapshot is a key; the signal a pub/sub
  channel. A leader that dies is replaced once its key expires (``ttl``).
- ``PostgresLease``: a session-level ``pg_try_advisory_lock`` on a dedicated connection; the
  key is derived from the poller's name. The lock lives exactly as long as that session, so
  a lost connection is a lost lease, and a leader that dies is replaced at once. The
  snapshot is a row in a table (``refetch_pollers``); the signal a ``NOTIFY`` that the same
  connection ``LISTEN``s to.

The drivers are imported when a lease first connects, as for the backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ._cancel import still_running
from ._exceptions import ConfigurationError
from ._polling.poller import Poller
from .backends._urls import (
    check_name,
    kind_of,
    postgres_dsn,
    redact,
    require_driver,
    split_options,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = [
    "PostgresLease",
    "RedisLease",
    "has_leases",
    "lease_from_url",
    "lease_schema_sql",
    "lease_ttl",
    "with_leases",
]

logger = logging.getLogger("refetch.worker")

#: How long the leader's snapshot outlives its last publish (Redis): long enough to serve
#: it through any outage of the pollers, short enough that a renamed poller leaves no trace.
SNAPSHOT_TTL = 7 * 24 * 3600.0

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[2], 'released')
  return 1
end
return 0
"""
_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if ARGV[4] == '1' then
  redis.call('PUBLISH', KEYS[3], 'changed')
end
return 1
"""


class RedisLease:
    """Leadership of one poller in Redis, plus its shared snapshot.

    Keys (one hash slot per poller): ``<prefix>{<name>}:lease`` (the holder's token),
    ``<prefix>{<name>}:snapshot``, and the channel ``<prefix>{<name>}:changed``.
    ``ttl`` must outlive the poller's longest cycle (``max_backoff`` plus ``timeout``): the
    leader renews once per cycle. ``RedisLease(name, url)`` opens its own connections;
    ``RedisLease(name, client=app_redis)`` uses the app's client (never closed here; the
    pub/sub connection comes from its pool).
    """

    def __init__(
        self,
        name: str,
        url: str | None = None,
        *,
        client: Redis | None = None,
        ttl: float = 30.0,
        prefix: str = "refetch:poller:",
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("give RedisLease a url or a client, not both")
        if ttl <= 0:
            raise ConfigurationError(f"RedisLease({name!r}): ttl must be > 0 seconds")
        if url is not None:
            require_driver("redis", "redis", "RedisLease")
        self.name = name
        self.ttl = ttl
        self.url = redact(url) if url is not None else "redis (client given by the app)"
        self._dsn = url
        self._client = client
        self._owned = client is None
        base = f"{prefix}{{{name}}}"
        self.lease_key = f"{base}:lease"
        self.snapshot_key = f"{base}:snapshot"
        self.channel = f"{base}:changed"
        self._token = secrets.token_hex(16)
        self._pubsub: PubSub | None = None

    def _redis(self) -> Redis:
        if self._client is None:
            import redis.asyncio

            assert self._dsn is not None
            self._client = redis.asyncio.Redis.from_url(
                self._dsn, socket_connect_timeout=5, socket_timeout=5
            )
        return self._client

    async def acquire(self) -> bool:
        won = bool(
            await self._redis().set(self.lease_key, self._token, nx=True, px=self._ms(self.ttl))
        )
        still_running()
        if not won:
            won = await self.renew()  # it may be ours already
        if won:
            # a leader reads no signals: do not let its own pile up in the subscription
            await self._drop_pubsub()
        return won

    async def renew(self) -> bool:
        result = await self._redis().eval(
            _RENEW, 1, self.lease_key, self._token, self._ms(self.ttl)
        )
        still_running()
        return bool(result)

    async def release(self) -> None:
        await self._redis().eval(_RELEASE, 2, self.lease_key, self.channel, self._token)

    async def publish(self, snapshot: str, *, changed: bool) -> bool:
        result = await self._redis().eval(
            _PUBLISH,
            3,
            self.lease_key,
            self.snapshot_key,
            self.channel,
            self._token,
            snapshot,
            self._ms(SNAPSHOT_TTL),
            "1" if changed else "0",
        )
        still_running()
        return bool(result)

    async def snapshot(self) -> str | None:
        # Subscribe before reading: a change published after this read wakes wait().
        await self._subscribe()
        raw = await self._redis().get(self.snapshot_key)
        still_running()
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    async def wait(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        pubsub = self._pubsub
        if pubsub is None:
            await asyncio.sleep(seconds)
            return
        try:
            while (left := deadline - loop.time()) > 0:
                # returns None early for a subscribe confirmation: hence the loop
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
                still_running()
                if message is not None:
                    while await pubsub.get_message(ignore_subscribe_messages=True, timeout=0):
                        pass  # several signals mean one re-read
                    return
        except Exception as exc:
            logger.debug("lease %s: pub/sub failed, resubscribing: %r", self.name, exc)
            await self._drop_pubsub()
            await asyncio.sleep(max(0.0, deadline - loop.time()))

    async def _subscribe(self) -> None:
        if self._pubsub is not None:
            return
        pubsub = self._redis().pubsub()
        try:
            await pubsub.subscribe(self.channel)
            still_running()
        except BaseException:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        self._pubsub = pubsub

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        await self._drop_pubsub()
        if self._owned and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, int(seconds * 1000))


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


_BACKEND_OPTIONS = ("stream", "table", "channel", "max_entries", "create_tables")


def has_leases(url: str) -> bool:
    """Whether the service a backend URL names also holds poller leases: Redis and
    PostgreSQL (any ``postgresql+driver://`` too) do; NATS and ``memory://`` do not."""
    return kind_of(url) in ("redis", "postgres")


def lease_from_url(url: str, name: str, *, ttl: float = 30.0) -> RedisLease | PostgresLease:
    """The lease for poller ``name`` in the service a backend URL names.

    ``redis://`` gives a ``RedisLease`` (keys under ``refetch:poller:``, or ``<stream>:poller:``
    when the URL has ``?stream=``); ``postgresql://`` a ``PostgresLease`` (table
    ``refetch_pollers``, or ``<table>_pollers`` when the URL has ``?table=``). ``ttl`` applies to
    Redis only: a PostgreSQL lock lasts as long as its connection.
    """
    base, options = split_options(url, _BACKEND_OPTIONS)
    kind = kind_of(url)
    if kind == "redis":
        stream = options.get("stream")
        prefix = f"{stream}:poller:" if stream else "refetch:poller:"
        return RedisLease(name, base, ttl=ttl, prefix=prefix)
    if kind == "postgres":
        table = options.get("table")
        create = options.get("create_tables", "true").lower() not in ("false", "0")
        return PostgresLease(
            name,
            base,
            table=f"{table}_pollers" if table else "refetch_pollers",
            create_tables=create,
        )
    raise ConfigurationError(
        f"no lease for {redact(url)!r}: pollers share leadership through redis:// or "
        "postgresql:// (NATS and memory:// have no lease; without one every instance polls)"
    )


def lease_ttl(spec: Poller) -> float:
    """A lease time that outlives the poller's longest cycle: the longest wait, a poll that
    runs into its timeout, and the lease's own round trips."""
    longest_wait = max(spec.max_backoff, spec.interval * (1 + spec.jitter))
    return longest_wait + 2 * spec.timeout + 1.0


def with_leases(pollers: Iterable[Poller], url: str) -> list[Poller]:
    """``pollers``, each with ``lease_from_url(url, poller.name, ttl=lease_ttl(poller))``."""
    return [replace(p, lease=lease_from_url(url, p.name, ttl=lease_ttl(p))) for p in pollers]
