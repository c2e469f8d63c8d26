"""How a poller shares its value with other instances: ``SharedSnapshot`` over a
``SharedLease``, or ``NotShared``, its no-op twin (no lease, or a lease for leadership only).

The leader publishes its snapshot after every poll, before it notifies; followers read it
once per cycle and as soon as the leader signals a change. What is shared is the API's body
(JSON text), not the extracted value, so a follower runs the same ``extract`` and gets the
same types (models, dataclasses) the leader has. The poller's run talks to either twin the
same way, as the hub talks to ``LocalSequencer`` or ``BrokerSequencer``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from .cached import Cached
from .poller import Poller, SharedLease

logger = logging.getLogger("refetch.worker")


class Sharing(Protocol):
    def fetched(self, body: Any, text: str | None = None) -> None:
        """A poll fetched ``body`` (``text``: as the API sent it); not accepted yet."""

    def accepted(self) -> None:
        """The fetched body became the poller's value."""

    async def publish(self, cached: Cached, *, changed: bool) -> None:
        """After a poll as the leader: hand the value to the followers."""

    async def follow(self, cached: Cached) -> Cached | None:
        """As a follower: the leader's value, or None to keep ``cached``."""

    async def wait(self, delay: float) -> None:
        """As a follower: until the next cycle, or until the leader signals a change."""

    async def aclose(self) -> None: ...


class NotShared:
    """Nothing to share: a follower waits out its cycle and keeps its own value."""

    def __init__(self, sleep: Callable[[float], Awaitable[None]]) -> None:
        self._sleep = sleep

    def fetched(self, body: Any, text: str | None = None) -> None:
        pass

    def accepted(self) -> None:
        pass

    async def publish(self, cached: Cached, *, changed: bool) -> None:
        pass

    async def follow(self, cached: Cached) -> Cached | None:
        return None

    async def wait(self, delay: float) -> None:
        await self._sleep(delay)

    async def aclose(self) -> None:
        pass


class SharedSnapshot:
    """The leader's body as JSON text, published through a ``SharedLease`` and followed."""

    def __init__(
        self, spec: Poller, lease: SharedLease, sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self._spec = spec
        self._lease = lease
        self._sleep = sleep
        #: The last accepted body as JSON text, and the one the current poll fetched.
        self._body_text: str | None = None
        self._fetched_text: str | None = None
        self._problem: str | None = None

    def fetched(self, body: Any, text: str | None = None) -> None:
        if text is None:
            try:
                text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                self._state("encode", "the fetch= body is not JSON, followers get nothing: %r", exc)
        self._fetched_text = text

    def accepted(self) -> None:
        self._body_text = self._fetched_text

    async def publish(self, cached: Cached, *, changed: bool) -> None:
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
            async with asyncio.timeout(self._spec.timeout):
                await self._lease.publish(snapshot, changed=changed)
        except Exception as exc:
            self._state(
                "publish", "publishing the snapshot failed, followers serve an older one: %r", exc
            )
            return
        if self._problem is not None:
            self._state(None, "")

    async def follow(self, cached: Cached) -> Cached | None:
        try:
            async with asyncio.timeout(self._spec.timeout):
                raw = await self._lease.snapshot()
        except Exception as exc:
            self._state("read", "reading the leader's snapshot failed: %r", exc)
            return None
        if raw is None:  # no leader has polled yet
            return None
        try:
            snapshot = json.loads(raw)
            body: str | None = snapshot["body"]
            fetched_at = _parse_iso(snapshot["fetched_at"])
            changed_at = _parse_iso(snapshot["changed_at"])
            stale, error = bool(snapshot["stale"]), snapshot["error"]
        except (ValueError, KeyError, TypeError) as exc:
            self._state("decode", "the shared snapshot is malformed: %r", exc)
            return None
        value = cached.value
        if body is not None and body != self._body_text:
            try:
                value = self._spec.extract(json.loads(body))
            except Exception as exc:
                self._state(
                    "extract", "extract rejects the leader's body on this instance: %r", exc
                )
                return None
            self._body_text = body
        elif body is None:  # the leader never had a value
            value = self._body_text = None
        if self._problem is not None:
            self._state(None, "")
        return Cached(
            value=value,
            fetched_at=fetched_at if body is not None else None,
            changed_at=changed_at if body is not None else None,
            stale=stale,
            error=error,
        )

    async def wait(self, delay: float) -> None:
        try:
            await self._lease.wait(delay)
        except Exception as exc:  # the lease should not raise here; never spin if it does
            logger.warning("poller %s: waiting for the leader failed: %r", self._spec.name, exc)
            await self._sleep(delay)

    async def aclose(self) -> None:
        try:
            await self._lease.aclose()
        except Exception:
            logger.exception("poller %s: closing the lease failed", self._spec.name)

    def _state(self, problem: str | None, message: str, *args: object) -> None:
        """Log a sharing problem once per kind, and the recovery once."""
        if problem == self._problem:
            return
        if problem is None:
            logger.info("poller %s: sharing works again", self._spec.name)
        else:
            logger.warning("poller %s: " + message, self._spec.name, *args)
        self._problem = problem


def sharing_for(spec: Poller, sleep: Callable[[float], Awaitable[None]]) -> Sharing:
    if isinstance(spec.lease, SharedLease):
        return SharedSnapshot(spec, spec.lease, sleep)
    return NotShared(sleep)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _parse_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
