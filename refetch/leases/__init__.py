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

One driver per module (``redis.py``, ``postgres.py``); the drivers are imported when a lease
first connects, as for the backends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from .._exceptions import ConfigurationError
from .._polling.poller import Poller
from ..backends._urls import kind_of, redact, split_options
from .postgres import PostgresLease, lease_schema_sql
from .postgres import advisory_key as advisory_key  # importable here as before the split
from .redis import SNAPSHOT_TTL as SNAPSHOT_TTL
from .redis import RedisLease

__all__ = [
    "PostgresLease",
    "RedisLease",
    "has_leases",
    "lease_from_url",
    "lease_schema_sql",
    "lease_ttl",
    "with_leases",
]

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
