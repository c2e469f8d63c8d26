"""BackgroundWorker: runs pollers, caches their last good value, notifies the hub on change.

One task per poller, owned by the worker: `start()` creates them, `aclose()` cancels and awaits
them. A poll never overlaps the previous one of the same poller.

Several instances: a poller with a `Lease` polls only where the lease is held. A `SharedLease`
also carries the leader's snapshot: the leader publishes it after every poll, before it notifies;
followers read it once per cycle and as soon as the leader signals a change, and serve it from
`latest()`. What is shared is the API's body (JSON text), not the extracted value, so a follower
runs the same `extract` and gets the same types (models, dataclasses) the leader has.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol

import httpx

from .._cancel import still_running
from .._exceptions import ConfigurationError
from .poller import Poller, SharedLease

__all__ = ["BackgroundWorker", "Cached", "Notifier", "PollerStatistics"]

logger = logging.getLogger("refetch.worker")


class Notifier(Protocol):
    """The hub as the worker sees it (`UpdateService` satisfies it).

    If the notifier also has `validate_types(names)` (the hub does), the worker calls it at
    construction, so a poller for an undeclared update type fails at startup, not at each poll.
    """

    def notify(
        self, type: str, key: str | None = None, *, audience: Iterable[str] | None = None
    ) -> None: ...


@dataclass(frozen=True)
class Cached:
    """What a poller last knew. `fetched_at` is None until the first successful poll.

    `fetched_at`: when the API last confirmed `value` (a 200 or a 304).
    `changed_at`: when `value` last changed. `stale`: the latest poll failed; `error` says why.
    """

    value: Any = None
    fetched_at: datetime | None = None
    changed_at: datetime | None = None
    stale: bool = False
    error: str | None = None

    @property
    def has_value(self) -> bool:
        return self.fetched_at is not None


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


class _PollerRun:
    """The running state of one poller; touched only by its own task (reads are snapshots)."""

    def __init__(
        self,
        spec: Poller,
        notifier: Notifier,
        rng: random.Random,
        sleep: Callable[[float], Awaitable[None]],
        monotonic: Callable[[], float],
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
        # Sharing with other instances (a SharedLease): the last accepted body as JSON text.
        self._shared = spec.lease if isinstance(spec.lease, SharedLease) else None
        self._body_text: str | None = None
        self._fetched_text: str | None = None
        self._share_problem: str | None = None

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
            stale=self.cached.stale,
            next_delay=self.next_delay,
            leader=self.leader,
        )

    async def run(self) -> None:
        try:
            while True:
                started = self._monotonic()
                try:
                    if await self._may_poll():
                        await self.poll()
                    elif self._shared is not None:
                        await self._follow(self._shared)
                except Exception:  # a bug (ours or a notifier's) must not end the poller
                    logger.exception("poller %s: unexpected error", self.spec.name)
                still_running()  # a driver may have swallowed aclose()'s cancel
                self.next_delay = self._delay()
                # start to start: a slow poll eats into the wait, never adds a catch-up burst
                delay = max(0.0, started + self.next_delay - self._monotonic())
                if self._shared is not None and not self.leader:
                    await self._wait_for_leader(self._shared, delay)
                else:
                    await self._sleep(delay)
        finally:
            try:
                if self.spec.lease is not None and self.leader:
                    self.leader = False
                    try:
                        await self.spec.lease.release()
                    except Exception:
                        logger.exception("poller %s: releasing the lease failed", self.spec.name)
            finally:
                if self._shared is not None:
                    try:
                        await self._shared.aclose()
                    except Exception:
                        logger.exception("poller %s: closing the lease failed", self.spec.name)

    def _delay(self) -> float:
        spec = self.spec
        if self.consecutive_failures == 0 or (spec.lease is not None and not self.leader):
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

    async def poll(self) -> None:
        spec = self.spec
        self.polls += 1
        self._fetched_text = None
        try:
            async with asyncio.timeout(spec.timeout):
                result = await self._fetch()
        except Exception as exc:
            notify = self._failed(_classify(exc, spec.timeout))
        else:
            notify = self._succeeded(result)
        if self._shared is not None:
            # before the notify: a follower's clients refetch when they hear it
            await self._publish(self._shared, changed=notify)
        if notify:
            self._notify()

    # -- sharing with other instances (SharedLease) -------------------------------------

    def _share_state(self, problem: str | None, message: str, *args: object) -> None:
        """Log a sharing problem once per kind, and the recovery once."""
        if problem == self._share_problem:
            return
        if problem is None:
            logger.info("poller %s: sharing works again", self.spec.name)
        else:
            logger.warning("poller %s: " + message, self.spec.name, *args)
        self._share_problem = problem

    async def _publish(self, shared: SharedLease, *, changed: bool) -> None:
        cached = self.cached
        if cached.has_value and self._body_text is None:
            return  # a fetch= body that is not JSON: logged when it was fetched
        snapshot = json.dumps(
            {
                "body": self._body_text,
                "fetched_at": _iso(cached.fetched_at),
                "changed_at": _iso(cached.changed_at),
                "stale": cached.stale,
                "error": cached.error,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )
        try:
            async with asyncio.timeout(self.spec.timeout):
                await shared.publish(snapshot, changed=changed)
        except Exception as exc:
            self._share_state(
                "publish", "publishing the snapshot failed, followers serve an older one: %r", exc
            )
            return
        if self._share_problem is not None:
            self._share_state(None, "")

    async def _follow(self, shared: SharedLease) -> None:
        """Take the leader's snapshot as this instance's cached value."""
        # Validators describe a body this instance fetched; after following they may lie
        # (the value may have gone back to an old ETag), so the next lead starts afresh.
        self._etag = self._last_modified = None
        try:
            async with asyncio.timeout(self.spec.timeout):
                raw = await shared.snapshot()
        except Exception as exc:
            self._share_state("read", "reading the leader's snapshot failed: %r", exc)
            return
        if raw is None:  # no leader has polled yet
            return
        try:
            snapshot = json.loads(raw)
            body: str | None = snapshot["body"]
            fetched_at = _parse_iso(snapshot["fetched_at"])
            changed_at = _parse_iso(snapshot["changed_at"])
            stale, error = bool(snapshot["stale"]), snapshot["error"]
        except (ValueError, KeyError, TypeError) as exc:
            self._share_state("decode", "the shared snapshot is malformed: %r", exc)
            return
        value = self.cached.value
        if body is not None and body != self._body_text:
            try:
                value = self.spec.extract(json.loads(body))
            except Exception as exc:
                self._share_state(
                    "extract", "extract rejects the leader's body on this instance: %r", exc
                )
                return
            self._body_text = body
        elif body is None:  # the leader never had a value
            value = self._body_text = None
        if self._share_problem is not None:
            self._share_state(None, "")
        self.cached = Cached(
            value=value,
            fetched_at=fetched_at if body is not None else None,
            changed_at=changed_at if body is not None else None,
            stale=stale,
            error=error,
        )

    async def _wait_for_leader(self, shared: SharedLease, delay: float) -> None:
        try:
            await shared.wait(delay)
        except Exception as exc:  # the lease should not raise here; never spin if it does
            logger.warning("poller %s: waiting for the leader failed: %r", self.spec.name, exc)
            await self._sleep(delay)

    async def _fetch(self) -> Any:
        spec = self.spec
        if spec.fetch is not None:
            body = await spec.fetch()
            value = self._extract(body)
            if self._shared is not None:
                try:
                    self._fetched_text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
                except (TypeError, ValueError) as exc:
                    self._share_state(
                        "encode", "the fetch= body is not JSON, followers get nothing: %r", exc
                    )
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
        if self._shared is not None:
            self._fetched_text = response.text
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
            if self._shared is not None:
                self._body_text = self._fetched_text
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


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _parse_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class BackgroundWorker:
    """Runs pollers for the lifetime of an `async with` block (or `start()` ... `aclose()`)."""

    def __init__(
        self,
        notifier: Notifier,
        pollers: Iterable[Poller],
        *,
        client: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not callable(getattr(notifier, "notify", None)):
            raise ConfigurationError(
                "BackgroundWorker(notifier, ...): notifier needs a notify(type, key) method; "
                "pass the UpdateService"
            )
        self._runs: dict[str, _PollerRun] = {}
        shared_rng = rng if rng is not None else random.Random()
        for spec in pollers:
            if not isinstance(spec, Poller):
                raise ConfigurationError(
                    f"BackgroundWorker: pollers must be made by refetch.poller(), got {spec!r}"
                )
            if spec.name in self._runs:
                raise ConfigurationError(
                    f"BackgroundWorker: two pollers are named {spec.name!r}; "
                    "give them distinct name= values"
                )
            self._runs[spec.name] = _PollerRun(spec, notifier, shared_rng, sleep, monotonic)
        validate_types = getattr(notifier, "validate_types", None)
        if callable(validate_types):
            validate_types(sorted({run.spec.update_type for run in self._runs.values()}))
        self._client = client
        self._owns_client = False
        self._tasks: list[asyncio.Task[None]] = []
        self._state = "new"

    @property
    def pollers(self) -> tuple[Poller, ...]:
        return tuple(run.spec for run in self._runs.values())

    def latest(self, name: str) -> Cached:
        return self._run(name).cached

    def statistics(self) -> dict[str, PollerStatistics]:
        return {name: run.statistics() for name, run in self._runs.items()}

    async def start(self) -> None:
        if self._state != "new":
            raise RuntimeError("BackgroundWorker runs once; create a new one to start again")
        self._state = "running"
        if self._client is None and any(run.spec.url for run in self._runs.values()):
            self._client = httpx.AsyncClient(follow_redirects=True)
            self._owns_client = True
        for run in self._runs.values():
            run.client = self._client
            self._tasks.append(
                asyncio.create_task(run.run(), name=f"refetch poller {run.spec.name}")
            )

    async def aclose(self) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        for task in self._tasks:
            task.cancel()
        try:
            results = await asyncio.gather(*self._tasks, return_exceptions=True)
            for task, result in zip(self._tasks, results, strict=True):
                if isinstance(result, Exception):
                    logger.error("%s ended with %r", task.get_name(), result)
        finally:
            self._tasks.clear()
            if self._owns_client and self._client is not None:
                await self._client.aclose()

    async def __aenter__(self) -> BackgroundWorker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _run(self, name: str) -> _PollerRun:
        try:
            return self._runs[name]
        except KeyError:
            raise KeyError(
                f"no poller named {name!r}; known: {', '.join(sorted(self._runs)) or 'none'}"
            ) from None
