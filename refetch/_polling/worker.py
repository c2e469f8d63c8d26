"""BackgroundWorker: runs pollers, caches their last good value, notifies the hub on change.

One task per poller, owned by the worker: `start()` creates them, `aclose()` cancels and awaits
them. A poll never overlaps the previous one of the same poller.

Several instances: a poller with a `Lease` polls only where the lease is held. A `SharedLease`
also carries the leader's snapshot, which followers serve from `latest()` (`sharing.py`). One
poller's loop, cache and counters are `run.py`'s.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import cast

import httpx

from .._exceptions import ConfigurationError
from .cached import Cached
from .poller import Poller
from .run import DemandSource, Notifier, PollerRun, PollerStatistics

__all__ = ["BackgroundWorker", "Cached", "Notifier", "PollerStatistics"]

logger = logging.getLogger("refetch.worker")


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
        self._runs: dict[str, PollerRun] = {}
        watch_demand = getattr(notifier, "watch_demand", None)
        demand = cast("DemandSource", notifier) if callable(watch_demand) else None
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
            if spec.on_demand and demand is None:
                raise ConfigurationError(
                    f"poller {spec.name!r} is on_demand=True, but the notifier "
                    f"({type(notifier).__name__}) cannot say who listens (no watch_demand()): "
                    "pass the UpdateService as the BackgroundWorker's notifier, or declare the "
                    "poller with on_demand=False"
                )
            self._runs[spec.name] = PollerRun(spec, notifier, shared_rng, sleep, monotonic, demand)
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
        """The poller's cached value. An on-demand poller's value older than its interval is
        marked ``stale`` (``error`` "not polled: nobody listens") while nobody listens."""
        return self._run(name).latest()

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

    def _run(self, name: str) -> PollerRun:
        try:
            return self._runs[name]
        except KeyError:
            raise KeyError(
                f"no poller named {name!r}; known: {', '.join(sorted(self._runs)) or 'none'}"
            ) from None
