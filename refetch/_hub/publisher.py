"""Publishing from a process that serves no streams: a Flask/WSGI app, a cron job, a Celery task.

Such a process has no event loop of its own and never runs ``UpdateService.lifespan``,
so an ``UpdateService`` there would hold every notify for a start that never comes.
A ``Publisher`` only appends updates to the shared stream (the same Redis stream,
PostgreSQL table or JetStream stream the ASGI servers' hubs read); it has no listener,
no replay log and no connections. See docs/frameworks.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import os
import threading
import warnings
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any, TypeVar

from .._codec import encode_entry
from .._cursor import Cursor
from .._exceptions import (
    ConfigurationError,
    PublishError,
    RefetchError,
    ServiceClosed,
)
from .._update import declared_types, make_update, type_name
from ..backends._base import Backend
from ..backends._factory import backend_from_url
from ..backends._urls import kind_of

T = TypeVar("T")


class Publisher:
    """``notify()`` into a shared backend from sync code, without running a hub.

    ``Publisher("redis://host:6379/0")`` (any backend URL but ``memory://``, with the
    same ``?stream=`` / ``?table=`` options as the servers use) or
    ``Publisher(RedisBackend(...))``. Give ``types`` to have a typo raise
    ``UnknownUpdateType`` here rather than be ignored by every server.

    ``notify()`` blocks until the broker accepted the update (one round trip) and
    returns its cursor. It is thread-safe; the connection is opened on first use, on
    a private event loop in a daemon thread that ``close()`` (or ``with``) ends. After
    a ``fork()`` (gunicorn's preload, Celery's prefork pool) the child opens its own
    connection (given a URL; a ``Backend`` object is the caller's to recreate).
    """

    def __init__(
        self,
        backend: str | Backend,
        *,
        types: Iterable[str] | type[enum.Enum] | None = None,
        timeout: float = 10.0,
    ) -> None:
        # A URL lets a forked child build its own backend; an object is the caller's.
        self._source_url = backend if isinstance(backend, str) else None
        if isinstance(backend, str):
            if kind_of(backend) == "memory":  # private to this process: nobody hears it
                raise ConfigurationError(
                    "memory:// has no broker for a Publisher to publish to: give the "
                    "redis://, postgresql:// or nats:// URL that the servers' "
                    "UpdateService(backend=...) uses"
                )
            backend = backend_from_url(backend)
        elif not isinstance(backend, Backend):
            raise ConfigurationError(
                f"Publisher takes a backend URL (redis://..., postgresql://..., nats://...) "
                f"or a Backend object, not {backend!r}"
            )
        if timeout <= 0:
            raise ConfigurationError("timeout must be > 0 seconds")
        self.backend = backend
        self.timeout = timeout
        self.types: tuple[str, ...] | None = None
        if types is not None:
            self.types = declared_types(types)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._epoch: str | None = None
        self._connecting: asyncio.Lock | None = None
        self._pid = os.getpid()
        self._closed = False

    @property
    def url(self) -> str:
        return self.backend.url

    def notify(
        self,
        type: str | enum.Enum,
        key: str | int | None = None,
        *,
        audience: Iterable[str] | str | None = None,
    ) -> str:
        """Publish one update; returns its cursor. Raises ``PublishError`` if the broker
        does not take it within ``timeout`` (``BackendUnavailable`` if it cannot be reached).
        """
        payload = self._payload(type, key, audience)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            warnings.warn(
                "Publisher.notify() blocks this thread's event loop for a round trip to the "
                "broker: in async code, await publisher.publish(...) instead",
                RuntimeWarning,
                stacklevel=2,
            )
        positions = self._run(self._publish(payload))
        return str(Cursor(self._epoch or "", positions[0]))  # set by the publish

    async def publish(
        self,
        type: str | enum.Enum,
        key: str | int | None = None,
        *,
        audience: Iterable[str] | str | None = None,
    ) -> str:
        """``notify()`` for async code that runs no hub: awaits without blocking its loop."""
        payload = self._payload(type, key, audience)
        coro = self._publish(payload)
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure_loop(coro))
        with self._publish_errors(future):
            async with asyncio.timeout(self.timeout):
                positions = await asyncio.wrap_future(future)
        return str(Cursor(self._epoch or "", positions[0]))  # set by the publish

    def _payload(
        self,
        type_: str | enum.Enum,
        key: str | int | None,
        audience: Iterable[str] | str | None,
    ) -> bytes:
        name = type_name(type_)
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"an update type is a non-empty string, not {name!r}")
        return encode_entry(make_update(name, key, audience, known=self.types))

    async def _publish(self, payload: bytes) -> list[int]:
        # Runs on the private loop. Threads that notify at once must not connect twice
        # (a PostgreSQL backend would open two pools and leak one).
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._epoch is None:
                self._epoch = await self.backend.connect()  # BackendUnavailable names the URL
        return await self.backend.append([payload])

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._ensure_loop(coro)
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        with self._publish_errors(future):
            return future.result(self.timeout)

    @contextlib.contextmanager
    def _publish_errors(self, future: concurrent.futures.Future[Any]) -> Iterator[None]:
        """What a publish raises, from either side of the thread boundary: ``PublishError``."""
        try:
            yield
        except TimeoutError:
            future.cancel()
            raise PublishError(
                f"the backend at {self.url} did not take the update within {self.timeout:g}s"
            ) from None
        except RefetchError:
            raise
        except Exception as exc:
            raise PublishError(f"cannot publish to {self.url}: {exc!r}") from exc

    def _ensure_loop(self, coro: Coroutine[Any, Any, Any]) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                coro.close()
                raise ServiceClosed(f"the Publisher for {self.url} was closed")
            if self._pid != os.getpid():
                # A forked child: the parent's thread does not exist here, and its
                # sockets belong to the parent. Start over without touching them.
                self._pid = os.getpid()
                self._loop = self._thread = self._epoch = self._connecting = None
                if self._source_url is not None:
                    fresh = backend_from_url(self._source_url)
                    assert fresh is not None  # checked in __init__
                    self.backend = fresh
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name=f"refetch publisher {self.url}", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def close(self) -> None:
        """Close the broker connection and end the thread. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if self._pid == os.getpid():
            future = asyncio.run_coroutine_threadsafe(self.backend.aclose(), loop)
            # Closing a dead connection fails: then there is nothing left to release.
            with contextlib.suppress(Exception):
                future.result(self.timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(self.timeout)
        if not thread.is_alive():
            loop.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Publisher({self.url!r})"
