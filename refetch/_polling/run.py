"""One poller's run: its loop (lead or follow, poll, wait), its cache and its counters.

Touched only by its own task; the worker reads snapshots (``cached``, ``statistics()``).
Sharing with other instances goes through ``Sharing`` (``sharing.py``), whichever twin.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from .._cancel import still_running
from .._log import loggable
from .cached import Cached
from .poller import Poller
from .sharing import sharing_for

logger = logging.getLogger("refetch.worker")


class DemandView(Protocol):
    """Who would hear one poller's notify (``UpdateService.watch_demand()`` returns one)."""

    @property
    def wanted(self) -> bool: ...

    @property
    def listeners(self) -> int: ...

    @property
    def instances(self) -> int: ...

    def close(self) -> None: ...


class DemandSource(Protocol):
    """A notifier that can say who listens (the hub): what on-demand pollers need."""

    def watch_demand(
        self,
        update_type: str,
        key: str | None = None,
        *,
        audience: Iterable[str] | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> DemandView: ...


#: ``Cached.error`` of a value ``latest()`` marks stale because nobody listens.
NOT_POLLED = "not polled: nobody listens"


class Notifier(Protocol):
    """The hub as the worker sees it (`UpdateService` satisfies it).

    If the notifier also has `validate_types(names)` (the hub does), the worker calls it at
    construction, so a poller for an undeclared update type fails at startup, not at each poll.
    """

    def notify(
        self, type: str, key: str | None = None, *, audience: Iterable[str] | None = None
    ) -> None: ...


@dataclass(frozen=True)
class PollerStatistics:
    name: str
    update_type: str
    polls: int
    changes: int
    not_modified: int
    failures: int
    consecutive_failures: int
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    stale: bool
    next_delay: float | None
    leader: bool | None
    #: Declared ``on_demand=True``.
    on_demand: bool = False
    #: Polling here now (``why`` is "always" or "listeners").
    active: bool = True
    #: "always" (not on demand), "listeners" (someone listens, or did within
    #: ``idle_after``), "idle" (nobody listens: no polls) or "lease" (another instance polls).
    why: str = "always"
    #: Open streams on this instance that would hear the notify (on-demand pollers only).
    listeners: int = 0
    #: Other instances with such streams (on-demand pollers only).
    instances: int = 0
    #: Polls skipped because nobody listened (one per interval).
    polls_avoided: int = 0


class _Failure(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else self.kind


_NOT_MODIFIED = object()


def _classify(exc: Exception, timeout: float) -> _Failure:
    if isinstance(exc, _Failure):
        return exc
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return _Failure("timeout", f"no answer within {timeout:g}s")
    if isinstance(exc, httpx.ConnectError):
        return _Failure("connection failed", str(exc) or type(exc).__name__)
    if isinstance(exc, httpx.HTTPError):
        return _Failure("transport error", f"{type(exc).__name__}: {exc}")
    return _Failure("fetch failed", repr(exc))


def _differs(old: Any, new: Any) -> bool:
    try:
        return bool(old != new)
    except Exception:  # values whose comparison is ambiguous (arrays): assume a change
        return True


class PollerRun:
    """The running state of one poller; touched only by its own task (reads are snapshots)."""

    def __init__(
        self,
        spec: Poller,
        notifier: Notifier,
        rng: random.Random,
        sleep: Callable[[float], Awaitable[None]],
        monotonic: Callable[[], float],
        demand: DemandSource | None = None,
    ) -> None:
        self.spec = spec
        self.cached = Cached()
        self.client: httpx.AsyncClient | None = None
        self._notifier = notifier
        self._rng = rng
        self._sleep = sleep
        self._monotonic = monotonic
        self._etag: str | None = None
        self._last_modified: str | None = None
        self._failing_kind: str | None = None
        self.polls = 0
        self.changes = 0
        self.not_modified = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_success: datetime | None = None
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self.next_delay: float | None = None
        self.leader: bool | None = None if spec.lease is None else False
        self._sharing = sharing_for(spec, sleep)
        # On demand: who listens (from start()), when the last one left, and the edge
        # "someone listens again" that wakes an idle poller at once.
        self._demand_source = demand if spec.on_demand else None
        self._demand: DemandView | None = None
        self._unwanted_since = float("-inf")
        self._edge: asyncio.Event | None = None
        self.polls_avoided = 0
        if spec.lease is not None:
            self.why = "lease"
        else:
            self.why = "idle" if spec.on_demand else "always"

    def statistics(self) -> PollerStatistics:
        return PollerStatistics(
            name=self.spec.name,
            update_type=self.spec.update_type,
            polls=self.polls,
            changes=self.changes,
            not_modified=self.not_modified,
            failures=self.failures,
            consecutive_failures=self.consecutive_failures,
            last_success=self.last_success,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            stale=self.latest().stale,
            next_delay=self.next_delay,
            leader=self.leader,
            on_demand=self.spec.on_demand,
            active=self.why in ("always", "listeners"),
            why=self.why,
            listeners=0 if self._demand is None else self._demand.listeners,
            instances=0 if self._demand is None else self._demand.instances,
            polls_avoided=self.polls_avoided,
        )

    def latest(self) -> Cached:
        """The cached value; while nobody listens, one older than the interval is stale."""
        cached = self.cached
        if self._demand is None or not self._aged() or self._wanted():
            return cached
        return replace(cached, stale=True, error=NOT_POLLED)

    def _aged(self) -> bool:
        """A good value older than the interval (stale if nobody polls it)."""
        fetched_at = self.cached.fetched_at
        return (
            fetched_at is not None
            and not self.cached.stale
            and (datetime.now(UTC) - fetched_at).total_seconds() > self.spec.interval
        )

    def _wanted(self) -> bool:
        """Someone listens anywhere, or did within ``idle_after``."""
        demand = self._demand
        if demand is None:
            return True
        if demand.wanted:
            return True
        return self._monotonic() - self._unwanted_since < self.spec.idle_after

    def _demand_changed(self, wanted: bool) -> None:
        if not wanted:
            self._unwanted_since = self._monotonic()
        elif self.why == "idle" and self._edge is not None:
            self._edge.set()  # the first listener: poll now, not at the next interval

    def _become(self, why: str) -> None:
        """Record why this poller polls (or not) here; log when it starts or stops."""
        if why == self.why:
            return
        was, self.why = self.why, why
        name = loggable(self.spec.name)
        listeners = 0 if self._demand is None else self._demand.listeners
        instances = 0 if self._demand is None else self._demand.instances
        extra = {
            "poller": name,
            "why": why,
            "was": was,
            "listeners": listeners,
            "instances": instances,
            "polls_avoided": self.polls_avoided,
        }
        if why == "listeners":
            logger.info(
                "poller %s: polling: %d stream(s) here and %d other instance(s) listen",
                name,
                listeners,
                instances,
                extra={"event": "poller.started", **extra},
            )
        elif why == "idle":
            logger.info(
                "poller %s: stopped polling: nobody listened for %gs (%d polls avoided so far)",
                name,
                self.spec.idle_after,
                self.polls_avoided,
                extra={"event": "poller.stopped", **extra},
            )

    async def run(self) -> None:
        if self._demand_source is not None:
            self._edge = asyncio.Event()
            spec = self.spec
            self._demand = self._demand_source.watch_demand(
                spec.update_type, spec.key, audience=spec.audience, on_change=self._demand_changed
            )
        try:
            while True:
                started = self._monotonic()
                try:
                    if await self._may_poll():
                        if self._demand is None:
                            self._become("always")
                            await self.poll()
                        elif self._wanted():
                            refresh = self.why != "listeners"
                            self._become("listeners")
                            if self._edge is not None:
                                self._edge.clear()
                            await self.poll(refresh=refresh)
                        else:
                            self._become("idle")
                            self.polls_avoided += 1
                    else:
                        self._become("lease")
                        await self._follow()
                except Exception:  # a bug (ours or a notifier's) must not end the poller
                    logger.exception("poller %s: unexpected error", self.spec.name)
                still_running()  # a driver may have swallowed aclose()'s cancel
                self.next_delay = self._delay()
                # start to start: a slow poll eats into the wait, never adds a catch-up burst
                delay = max(0.0, started + self.next_delay - self._monotonic())
                if self.leader is False:
                    await self._sharing.wait(delay)
                else:
                    await self._pause(delay)
        finally:
            if self._demand is not None:
                self._demand.close()
            try:
                if self.spec.lease is not None and self.leader:
                    self.leader = False
                    try:
                        await self.spec.lease.release()
                    except Exception:
                        logger.exception("poller %s: releasing the lease failed", self.spec.name)
            finally:
                await self._sharing.aclose()

    async def _pause(self, delay: float) -> None:
        """Wait ``delay``; an idle on-demand poller wakes early when someone listens."""
        edge = self._edge
        if edge is None:
            await self._sleep(delay)
            return
        if not edge.is_set():
            sleeper = asyncio.ensure_future(self._sleep(delay))
            woken = asyncio.ensure_future(edge.wait())
            try:
                await asyncio.wait((sleeper, woken), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                woken.cancel()
                await asyncio.gather(sleeper, woken, return_exceptions=True)
        edge.clear()

    def _delay(self) -> float:
        spec = self.spec
        # idle (on demand, nobody listens): no poll, so no backoff; one interval per skipped poll
        if (
            self.consecutive_failures == 0
            or (spec.lease is not None and not self.leader)
            or self.why == "idle"
        ):
            return spec.interval * self._rng.uniform(1 - spec.jitter, 1 + spec.jitter)
        # exponential, capped; "equal jitter" keeps the delays non-decreasing below the cap
        exponent = min(self.consecutive_failures - 1, 32)
        ceiling = min(spec.max_backoff, spec.interval * 2.0**exponent)
        return ceiling * self._rng.uniform(0.5, 1.0)

    async def _may_poll(self) -> bool:
        lease = self.spec.lease
        if lease is None:
            return True
        was_leader = self.leader
        try:
            self.leader = await (lease.renew() if self.leader else lease.acquire())
        except Exception as exc:
            logger.warning("poller %s: lease check failed: %r", self.spec.name, exc)
            self.leader = False
        if self.leader != was_leader:
            logger.info(
                "poller %s: %s",
                self.spec.name,
                "leading, polling here" if self.leader else "following, another instance polls",
            )
        return bool(self.leader)

    async def poll(self, *, refresh: bool = False) -> None:
        """One poll. ``refresh``: the first after an idle spell, which notifies even if the
        value did not change when ``latest()`` was marking it stale (clients that read it
        meanwhile were told "stale" and should hear it is fresh)."""
        spec = self.spec
        was_stale = refresh and self._aged()
        self.polls += 1
        try:
            async with asyncio.timeout(spec.timeout):
                result = await self._fetch()
        except Exception as exc:
            notify = self._failed(_classify(exc, spec.timeout))
        else:
            notify = self._succeeded(result) or was_stale
        # before the notify: a follower's clients refetch when they hear it
        await self._sharing.publish(self.cached, changed=notify)
        if notify:
            self._notify()

    async def _follow(self) -> None:
        """Take the leader's value, if there is one to take, as this instance's."""
        followed = await self._sharing.follow(self.cached)
        if followed is not None:
            # Validators describe a body this instance fetched; after following they may
            # lie (the value may have gone back to an old ETag), so the next lead starts afresh.
            self._etag = self._last_modified = None
            self.cached = followed

    async def _fetch(self) -> Any:
        spec = self.spec
        if spec.fetch is not None:
            body = await spec.fetch()
            value = self._extract(body)
            self._sharing.fetched(body)
            return value
        if spec.url is None or self.client is None:  # poller() and start() rule this out
            raise RuntimeError(f"poller {spec.name}: no url or no client")
        headers = dict(spec.headers)
        if self._etag is not None:
            headers["If-None-Match"] = self._etag
        if self._last_modified is not None:
            headers["If-Modified-Since"] = self._last_modified
        response = await self.client.get(spec.url, headers=headers, timeout=spec.timeout)
        if response.status_code == 304:
            if not self.cached.has_value:
                self._etag = self._last_modified = None
                raise _Failure("HTTP 304", "not modified, but nothing is cached yet")
            return _NOT_MODIFIED
        if not response.is_success:
            raise _Failure(f"HTTP {response.status_code}", response.reason_phrase)
        try:
            body = response.json()
        except ValueError as exc:
            raise _Failure("invalid JSON", str(exc)) from exc
        value = self._extract(body)
        self._sharing.fetched(body, response.text)
        # validators only count once the body proved usable: otherwise the next poll's 304
        # would confirm a value we never accepted
        self._etag = response.headers.get("ETag")
        self._last_modified = response.headers.get("Last-Modified")
        return value

    def _extract(self, body: Any) -> Any:
        try:
            return self.spec.extract(body)
        except Exception as exc:
            raise _Failure("extract failed", repr(exc)) from exc

    def _succeeded(self, result: Any) -> bool:
        """Update the cache after a good poll; True if clients should be told."""
        now = datetime.now(UTC)
        old = self.cached
        self.last_success = now
        if self.consecutive_failures:
            logger.info(
                "poller %s (%s): recovered after %d failed polls",
                self.spec.name,
                source(self.spec),
                self.consecutive_failures,
            )
        self.consecutive_failures = 0
        self._failing_kind = None
        if result is _NOT_MODIFIED:
            self.not_modified += 1
            changed = False
            value = old.value
        else:
            value = result
            self._sharing.accepted()
            changed = not old.has_value or _differs(old.value, value)
        if changed:
            self.changes += 1
        self.cached = Cached(
            value=value,
            fetched_at=now,
            changed_at=now if changed else old.changed_at,
            stale=False,
            error=None,
        )
        return changed or old.stale

    def _failed(self, failure: _Failure) -> bool:
        """Update the cache after a failed poll; True if clients should be told."""
        now = datetime.now(UTC)
        error = str(failure)
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = error
        self.last_error_at = now
        old = self.cached
        self.cached = replace(old, stale=True, error=error)
        if failure.kind != self._failing_kind:
            logger.warning(
                "poller %s (%s): %s; %s",
                self.spec.name,
                source(self.spec),
                error,
                "serving the cached value" if old.has_value else "no value cached yet",
                extra={"poller": self.spec.name, "source": source(self.spec), "error": error},
            )
            self._failing_kind = failure.kind
        else:
            logger.debug("poller %s: still failing: %s", self.spec.name, error)
        return not old.stale

    def _notify(self) -> None:
        spec = self.spec
        try:
            self._notifier.notify(spec.update_type, spec.key, audience=spec.audience)
        except Exception:
            logger.exception("poller %s: notify(%r) raised", spec.name, spec.update_type)


def source(spec: Poller) -> str:
    """Where a poller gets its value, for logs: the URL without password or query string.

    Query strings carry API keys often enough that a log line must not repeat them.
    """
    if spec.url is None:
        fetch = spec.fetch
        return f"fetch={getattr(fetch, '__qualname__', None) or type(fetch).__name__}"
    url = httpx.URL(spec.url)
    if url.password:
        url = url.copy_with(username=url.username, password="***")
    return str(url.copy_with(query=b"...")) if url.query else str(url)
