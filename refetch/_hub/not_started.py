"""The hub before ``start()``: ``NotStarted`` stands where the fan-out will be, and a
``notify()`` from a process that will never start the hub is warned about."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Iterable

from .._auth import Principal
from .._exceptions import ServiceClosed
from .._fanout.connection import Connection, ConnectionInfo
from .._fanout.counts import FanOutStatistics
from .._fanout.sink import Start

NOT_STARTED_FIX = (
    "the UpdateService was never started: pass lifespan=updates.lifespan to your app, "
    "or `async with updates:` in your own lifespan"
)


class NotStarted:
    """The fan-out's place before ``start()``: no stream is open, so there is nothing to end,
    change or count (``attach`` is refused earlier: the hub is not running)."""

    connections = 0

    def __init__(self, types: tuple[str, ...]) -> None:
        self._types = types

    def close(self, reason: str, subject: str | None = None, session: str | None = None) -> int:
        return 0

    def close_all(self, reason: str, farewells: Callable[[int], Iterable[bytes]]) -> int:
        return 0

    def reauthorize(self, subject: str, principal: Principal) -> int:
        return 0

    def revised(self, principal: Principal, authenticated_at: float | None) -> Principal:
        return principal

    def attach(self, conn: Connection, hello: bytes, start: Start) -> None:
        raise ServiceClosed("the UpdateService is not running")

    def detach(self, conn: Connection) -> None:
        pass

    def stop(self) -> None:
        pass

    def describe(self) -> list[ConnectionInfo]:
        return []

    def statistics(self) -> FanOutStatistics:
        return FanOutStatistics.empty(self._types)


def warn_if_never_started(type_: str) -> bool:
    """Warn (True) when no event loop runs here: a process that will never start the hub."""
    # Before start() a notify is held until the lifespan starts the hub. Called with
    # no event loop in the thread, it is most likely a WSGI view, a script or a task
    # queue worker, where that never happens and the update would vanish silently.
    try:
        asyncio.get_running_loop()
        return False
    except RuntimeError:
        pass
    warnings.warn(
        f"notify({type_!r}) on an UpdateService that was never started: it is held "
        "until start() (the ASGI lifespan). In a process that serves no streams "
        "(Flask/WSGI, a cron job, a Celery task) that never happens: publish with "
        "refetch.Publisher(backend_url) instead (docs/frameworks.md)",
        RuntimeWarning,
        stacklevel=3,
    )
    return True
