"""The outbox: what one instance publishes to the broker, in order, and what failed.

Updates and control messages wait here for the publisher task. While the broker does not
answer, local clients are told directly, what failed is kept (bounded) and published again
once the broker is back, and what could not be kept becomes one resync marker. ``flush()``
waits until everything queued so far is out. Part of the ``BrokerSequencer``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

from .._backoff import Backoff
from .._codec import encode_entry, encode_resync_marker
from .._control import Control, stale
from .._exceptions import PublishError, ServiceClosed
from .._update import Update
from ..backends._base import Backend
from .sequencer import Item

logger = logging.getLogger("refetch")

Queued = tuple[Update | Control, bytes, "asyncio.Future[str] | None"]


class _PublishedLate(Exception):
    """A publish that local clients were already told about, then failed."""


class Outbox:
    def __init__(
        self,
        backend: Backend,
        *,
        deliver_local: Callable[[Update | Control], None],
        listening: Callable[[], bool],
        cursor_of: Callable[[int], str],
    ) -> None:
        self.backend = backend
        self._deliver_local = deliver_local
        self._listening = listening
        self._cursor_of = cursor_of
        self._queue: deque[Queued] = deque()
        self._limit = 10_000
        # Failed updates, oldest first, to publish before anything queued after them.
        self._unsent: deque[Update | Control] = deque()
        self._lost = False
        self.down: str | None = None
        self._wake = asyncio.Event()
        # flush(): entries queued / published so far, and who waits for which.
        self._enqueued = 0
        self._sent = 0
        self._last_position = 0
        self._barriers: list[tuple[int, asyncio.Future[int]]] = []
        # position -> time.monotonic() when its publish was sent: the round trip to
        # the broker and back (``lag``), and where the latency histogram starts. The
        # listener can read an entry before the publisher hears its own reply, so
        # reads during a publish are kept too (position -> when read).
        self._sent_at: dict[int, float] = {}
        self._read_at: dict[int, float] = {}
        self._publishing = 0
        # A publish has gone unanswered for ``local_fallback_after``: local clients were
        # told of everything queued, and are told of what is put, until it ends.
        self._stalled = False
        self.lag: float | None = None
        self.publish_timeout = 10.0
        self.local_fallback_after = 1.0

    def read_back(self, position: int) -> float | None:
        """The listener read ``position``: when its publish was sent, if it was ours."""
        sent = self._sent_at.pop(position, None)
        if sent is not None:
            self.lag = time.monotonic() - sent
        elif self._publishing and len(self._read_at) < 10_000:
            self._read_at[position] = time.monotonic()
        return sent

    async def flush(self, timeout: float | None = None) -> str:  # noqa: ASYNC109
        """Wait until everything queued so far is published; the cursor of the newest.

        Raises ``PublishError`` (and nothing else) when the broker does not take it
        within ``timeout`` seconds (``None``: ``publish_timeout``); what is queued stays
        queued and goes out when the broker answers.
        """
        if self.down is not None:
            raise PublishError(
                f"the backend at {self.backend.url} is not accepting updates "
                f"({self.down}); they are kept and published when it is back"
            )
        target = self._enqueued
        if self._sent < target:
            limit = self.publish_timeout if timeout is None else timeout
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._barriers.append((target, future))
            try:
                async with asyncio.timeout(limit):
                    await future
            except TimeoutError:
                raise PublishError(
                    f"the backend at {self.backend.url} did not confirm within {limit:g} s; "
                    "what is queued is published when it answers"
                ) from None
        return self._cursor_of(self._last_position)

    def _settle_barriers(self, failure: BaseException | None = None) -> None:
        still = []
        for target, future in self._barriers:
            if future.done():
                continue
            if failure is not None:
                future.set_exception(failure)
            elif target <= self._sent:
                future.set_result(self._sent)
            else:
                still.append((target, future))
        self._barriers = still

    def put(self, items: Sequence[Item]) -> None:
        """Queue updates and control messages for the broker, in order."""
        backend = self.backend
        for update, future, _ in items:
            try:
                payload = encode_entry(update)
            except PublishError as exc:
                if future is not None:
                    future.set_exception(exc)
                else:
                    logger.error("%r dropped: %s", update, exc)
                continue
            if not self._listening() or self._stalled:
                # Our listener cannot hear the broker, or a publish is stuck: local
                # clients hear it from us now (not after the stuck publish gives up).
                self._deliver_local(update)
            if self.down is None and len(self._queue) < self._limit:
                self._queue.append((update, payload, future))
                self._enqueued += 1
                continue
            if self._listening():
                self._deliver_local(update)
            if future is not None:
                future.set_exception(
                    PublishError(
                        f"the backend at {backend.url} is not accepting updates "
                        f"({self.down or 'too many waiting'}); local clients were told"
                    )
                )
            elif self.down is not None:
                self._keep(update)
            else:
                self._lost = True
        # Whatever was accepted, the publisher must hear of it: an update kept in
        # ``_unsent`` while a recovery append is in flight goes out in that recovery.
        self._wake.set()

    def _keep(self, update: Update | Control) -> None:
        """Keep a failed update for when the broker is back (bounded: beyond, one resync)."""
        if len(self._unsent) >= self._limit:
            self._lost = True  # the resync marker covers every update kept before it
            self._unsent.clear()
        if not isinstance(update, Update):
            update = stale(update)  # a principal published late could undo a newer one
        self._unsent.append(update)

    async def run(self) -> None:
        """The publisher task: sends what is queued, and what failed once the broker is back."""
        backend = self.backend
        backoff = Backoff()
        while True:
            await self._wake.wait()
            self._wake.clear()
            # While ``down`` is set, put() keeps updates in ``_unsent``, so everything
            # kept goes out before anything queued after the recovery, in order; the
            # broker is "back" only once nothing kept is left (updates kept during a
            # recovery append go out in the same recovery, not at the next outage).
            failed = self.down is not None
            while self.down is not None or self._lost or self._unsent:
                if failed:
                    await asyncio.sleep(backoff.next())
                try:
                    async with asyncio.timeout(self.publish_timeout):
                        await self._send_unsent(backend)
                except Exception as exc:
                    logger.debug("backend %s still unavailable: %r", backend.url, exc)
                    self.down = repr(exc)
                    failed = True
                    continue
                failed = False
                if self._unsent or self._lost:
                    continue  # kept while that append was in flight: send it now
                if self.down is not None:
                    logger.warning("publishing to %s again", backend.url)
                self.down = None
                backoff.reset()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(500, len(self._queue)))]
                try:
                    positions = await self._publish_batch(backend, batch)
                except asyncio.CancelledError:
                    # Stopped mid-publish: stop() sends the batch again (a duplicate at
                    # worst, which only invalidates twice), never drops it.
                    self._queue.extendleft(reversed(batch))
                    raise
                except _PublishedLate as exc:
                    cause = exc.__cause__
                    failure = cause if isinstance(cause, Exception) else exc
                    self._publish_failed(backend, failure, batch, told=True)
                    self._wake.set()
                    break
                except Exception as exc:
                    self._publish_failed(backend, exc, batch)
                    self._wake.set()
                    break
                for (_, _, future), position in zip(batch, positions, strict=True):
                    if future is not None and not future.done():
                        future.set_result(self._cursor_of(position))
                self._sent += len(batch)
                if positions:
                    self._last_position = positions[-1]
                self._settle_barriers()

    async def _publish_batch(
        self,
        backend: Backend,
        batch: list[Queued],
    ) -> list[int]:
        task = asyncio.get_running_loop().create_task(
            self._timed_publish(backend, [p for _, p, _ in batch])
        )
        try:
            done, _ = await asyncio.wait({task}, timeout=self.local_fallback_after)
        except asyncio.CancelledError:
            task.cancel()  # stopped: stop() publishes the batch, this must not as well
            raise
        if done:
            return task.result()
        # The broker is slow to answer (a stalled connection, a reconnecting client):
        # local clients should not wait for it, for this batch nor for what queues up
        # behind it. What we told them, we do not repeat if the publish then fails.
        self._stalled = True
        for update, _, _ in batch:
            self._deliver_local(update)
        for update, _, _ in self._queue:
            self._deliver_local(update)
        try:
            async with asyncio.timeout(self.publish_timeout):
                return await task
        except Exception as exc:
            raise _PublishedLate from exc
        finally:
            self._stalled = False

    async def _timed_publish(self, backend: Backend, payloads: list[bytes]) -> list[int]:
        sent = time.monotonic()
        self._publishing += 1
        try:
            positions = await backend.append(payloads)
        finally:
            self._publishing -= 1
        for position in positions:
            read = self._read_at.pop(position, None)
            if read is not None:
                self.lag = read - sent
            else:
                self._sent_at[position] = sent
        if len(self._sent_at) > 10_000:  # published but never read back: do not grow
            self._sent_at.clear()
        if not self._publishing:
            self._read_at.clear()
        return positions

    async def _send_unsent(self, backend: Backend) -> None:
        # What is sent is taken out of ``_unsent`` before the await and put back in
        # front if it fails: put() appends to ``_unsent`` meanwhile, so counting what
        # to remove after the await would remove the wrong updates.
        if self._lost:
            # More failed than we kept: nobody can tell what other instances missed.
            self._lost = False
            self._unsent.clear()
            try:
                await backend.append(
                    [encode_resync_marker("updates were lost while a broker was away")]
                )
            except BaseException:
                self._lost = True
                raise
        elif self._unsent:
            updates = list(self._unsent)
            self._unsent.clear()
            try:
                await backend.append([encode_entry(u) for u in updates])
            except BaseException:
                self._unsent.extendleft(reversed(updates))
                if len(self._unsent) > self._limit:
                    self._lost = True
                    self._unsent.clear()
                raise
        else:
            await backend.ping()

    def _publish_failed(
        self,
        backend: Backend,
        exc: Exception,
        batch: list[Queued],
        told: bool = False,
    ) -> None:
        self.down = repr(exc)
        logger.warning(
            "cannot publish to %s: %r; local clients are told directly, the rest is "
            "published when the broker is back",
            backend.url,
            exc,
        )
        waiting = list(self._queue)
        self._queue.clear()
        self._enqueued = self._sent  # what was waiting is kept below, not in the outbox
        self._settle_barriers(
            PublishError(f"cannot publish to {backend.url}: {exc!r}; kept for when it is back")
        )
        for update, _, future in batch + waiting:
            if not told:  # told: the batch stalled, and local clients heard all of it
                self._deliver_local(update)  # twice if the listener is down too: harmless
            if future is not None:
                if not future.done():
                    future.set_exception(
                        PublishError(
                            f"cannot publish to {backend.url}: {exc!r}; local clients were told"
                        )
                    )
            else:
                self._keep(update)

    async def stop(self, grace: float) -> None:
        """Publish what is kept and queued, in order, if the broker takes it within ``grace``."""
        self._settle_barriers(ServiceClosed("closed before everything was published"))
        try:
            async with asyncio.timeout(grace):
                # A loop, not one snapshot: what is put while an append is in flight
                # goes out too, after it.
                while self._lost or self._unsent or self._queue:
                    if self._lost or self._unsent:
                        await self._send_unsent(self.backend)
                        continue
                    outbox, self._queue = list(self._queue), deque()
                    try:
                        positions = await self.backend.append([p for _, p, _ in outbox])
                    except BaseException:
                        self._queue.extendleft(reversed(outbox))
                        raise
                    for (_, _, future), position in zip(outbox, positions, strict=True):
                        if future is not None and not future.done():
                            future.set_result(self._cursor_of(position))
        except Exception as exc:
            logger.warning(
                "%d update(s) not published to %s at close: %r",
                len(self._queue) + len(self._unsent),
                self.backend.url,
                exc,
            )
        for _, _, future in self._queue:
            if future is not None and not future.done():
                future.set_exception(ServiceClosed("closed before the update was published"))
        self._queue.clear()
        self._unsent.clear()
