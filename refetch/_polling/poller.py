"""Declaring a poller: what to fetch, how often, and which update type it feeds.

A `Poller` is a frozen description; `BackgroundWorker` (in `worker.py`) runs it.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx

from .._exceptions import ConfigurationError
from .._update import audience_of, type_name

__all__ = ["Extract", "Fetch", "Lease", "Poller", "SharedLease", "poller"]

Fetch = Callable[[], Awaitable[Any]]
Extract = Callable[[Any], Any]

DEFAULT_MAX_BACKOFF = 30.0


class Lease(Protocol):
    """Leadership for one poller across instances: only the holder polls.

    Implementations: `refetch.leases.RedisLease`, `refetch.leases.PostgresLease`.
    `acquire()` and `renew()` must not block waiting for the lease: they answer whether this
    instance holds it now. The worker renews once per cycle, so the lease must outlive the
    longest cycle (`max_backoff` plus `timeout`).
    """

    async def acquire(self) -> bool: ...

    async def renew(self) -> bool: ...

    async def release(self) -> None: ...


@runtime_checkable
class SharedLease(Lease, Protocol):
    """A lease that also carries the leader's snapshot to the other instances.

    The worker detects it by these methods. The leader calls `publish()` after every poll
    (`changed`: the poll notifies, so followers should re-read now); followers call
    `snapshot()` once per cycle and wait in `wait()`, which returns early when the leader
    publishes a change or releases the lease. `aclose()` ends the lease's connections; the
    worker calls it when the poller stops, leader or not.
    """

    async def publish(self, snapshot: str, *, changed: bool) -> bool:
        """Store `snapshot` if this instance still holds the lease; False if it does not."""
        ...

    async def snapshot(self) -> str | None: ...

    async def wait(self, seconds: float) -> None: ...

    async def aclose(self) -> None: ...


def _identity(body: Any) -> Any:
    return body


@dataclass(frozen=True, kw_only=True)
class Poller:
    name: str
    update_type: str
    key: str | None
    url: str | None
    fetch: Fetch | None
    extract: Extract
    interval: float
    timeout: float
    max_backoff: float
    jitter: float
    headers: tuple[tuple[str, str], ...]
    audience: frozenset[str] | None
    lease: Lease | None
    #: Poll only while a stream on some instance would hear the notify (docs/pollers.md).
    on_demand: bool = False
    #: Seconds an on-demand poller goes on polling after the last such stream left.
    idle_after: float = 30.0


def poller(
    update_type: str | enum.Enum,
    *,
    url: str | None = None,
    fetch: Fetch | None = None,
    extract: Extract = _identity,
    interval: float = 2.0,
    key: str | None = None,
    timeout: float = 5.0,
    name: str | None = None,
    headers: Mapping[str, str] | None = None,
    max_backoff: float | None = None,
    jitter: float = 0.1,
    audience: Iterable[str] | str | None = None,
    lease: Lease | None = None,
    on_demand: bool = False,
    idle_after: float = 30.0,
) -> Poller:
    """Describe one poller. Pass `url=` (GET, JSON body) or `fetch=` (an async function)."""
    update_type = type_name(update_type)
    if not isinstance(update_type, str) or not update_type:
        raise ConfigurationError(
            "poller(): update_type must be a non-empty string, e.g. 'progress'"
        )
    if (url is None) == (fetch is None):
        raise ConfigurationError(
            f"poller({update_type!r}): pass exactly one of url= (an http(s) URL that returns "
            "JSON) or fetch= (an async function returning the body)"
        )
    if url is not None:
        try:
            scheme = httpx.URL(url).scheme
        except httpx.InvalidURL as exc:
            raise ConfigurationError(
                f"poller({update_type!r}): invalid url {url!r}: {exc}"
            ) from exc
        if scheme not in ("http", "https"):
            raise ConfigurationError(
                f"poller({update_type!r}): url must start with http:// or https://, got {url!r}"
            )
    elif headers:
        raise ConfigurationError(
            f"poller({update_type!r}): headers= only applies to url=; "
            "a fetch= function sets its own headers"
        )
    if not callable(extract):
        raise ConfigurationError(
            f"poller({update_type!r}): extract must be a function body -> value"
        )
    if interval <= 0:
        raise ConfigurationError(
            f"poller({update_type!r}): interval must be > 0 seconds, got {interval}"
        )
    if timeout <= 0:
        raise ConfigurationError(
            f"poller({update_type!r}): timeout must be > 0 seconds, got {timeout}"
        )
    if max_backoff is None:
        max_backoff = max(DEFAULT_MAX_BACKOFF, interval)
    if max_backoff < interval:
        raise ConfigurationError(
            f"poller({update_type!r}): max_backoff ({max_backoff}) must be >= interval "
            f"({interval}); backoff only ever slows polling down"
        )
    if not 0 <= jitter < 1:
        raise ConfigurationError(
            f"poller({update_type!r}): jitter is a fraction of the interval in [0, 1), got {jitter}"
        )
    if not isinstance(on_demand, bool):
        raise ConfigurationError(
            f"poller({update_type!r}): on_demand is True or False, got {on_demand!r}"
        )
    if not idle_after >= 0:
        raise ConfigurationError(
            f"poller({update_type!r}): idle_after must be >= 0 seconds, got {idle_after}"
        )
    if name is None:
        name = update_type if key is None else f"{update_type}:{key}"
    return Poller(
        name=name,
        update_type=update_type,
        key=key,
        url=url,
        fetch=fetch,
        extract=extract,
        interval=float(interval),
        timeout=float(timeout),
        max_backoff=float(max_backoff),
        jitter=float(jitter),
        headers=tuple((headers or {}).items()),
        audience=audience_of(audience),
        lease=lease,
        on_demand=on_demand,
        idle_after=float(idle_after),
    )
