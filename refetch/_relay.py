"""The link between a hub and a shared backend, so many instances share one stream.

Every instance publishes its notifies to the broker and delivers only what its
listener reads back, so cursors are global and a client may resume on any
instance. While the broker is out of reach, local notifies go straight to local
clients, failed publishes are kept (bounded) and republished later, and what
cannot be accounted for becomes a ``resync``. See ``docs/scaling.md``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._connection import Connection
from ._control import CloseStreams, Control, Reauthorize
from ._exceptions import BackendUnavailable, PublishError, ServiceClosed
from ._sse import encode_resync
from ._update import Update
from .backends._base import (
    Backend,
    Backoff,
    StreamGap,
    decode_entry,
    encode_entry,
    encode_resync_marker,
)

if TYPE_CHECKING:
    from ._hub import UpdateService

logger = logging.getLogger("refetch")
update_logger = logging.getLogger("refetch.updates")


class _TimedOut(Exception):
    """A publish that local clients were already told about, then failed."""


class Relay:
    """Owned by an ``UpdateService`` that has a backend: its publisher and listener tasks."""

    def __init__(self, hub: UpdateService, backend: Backend) -> None:
        self.hub = hub
        self.backend = backend
        # Updates wait in the outbox for the publisher task; the listener task reads
        # the shared stream and delivers. While either is cut off, local updates go
        # straight to local clients (see drain).
        self._outbox: deque[tuple[Update | Control, bytes, asyncio.Future[str] | None]] = deque()
        self._outbox_limit = 10_000
        self._unsent: deque[Update | Control] = deque(maxlen=self._outbox_limit)
        # flush(): entries put in the outbox / published so far, and who waits for which.
        self._enqueued = 0
        self._sent = 0
        self._last_position = 0
        self._barriers: list[tuple[int, asyncio.Future[int]]] = []
        # Control messages: this instance's name in the stream, its own serials, and
        # per subject the newest reauthorize of ours not read back yet (with a
        # deadline), which wins over anything read before it.
        self.origin = secrets.token_hex(6)
        self._serial = 0
        self._own: dict[str, tuple[int, float]] = {}
        self._unconfirmed_timer: asyncio.TimerHandle | None = None
        self._lost = False
        self._publish_down: str | None = None
        self._listen_down: str | None = None
        self._publish_wake = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.catch_up_timeout = 5.0
        # position -> time.monotonic() when its publish was sent: the round trip to
        # the broker and back (``lag``), and where the latency histogram starts. The
        # listener can read an entry before the publisher hears its own reply, so
        # reads during a publish are kept too (position -> when read).
        self._sent_at: dict[int, float] = {}
        self._read_at: dict[int, float] = {}
        self._publishing = 0
        self.lag: float | None = None
        self.publish_timeout = 10.0
        self.local_fallback_after = 1.0
        #: Without the broker, an instance cannot hear revocations made elsewhere:
        #: after this long its authenticated streams are ended (fail closed).
        self.confirm_timeout = 1.0

    @property
    def publisher_down(self) -> str | None:
        return self._publish_down

    @property
    def listener_down(self) -> str | None:
        return self._listen_down

    @property
    def unconfirmed(self) -> str | None:
        """Why permissions cannot be confirmed now (the broker is out of hearing), or None."""
        if self._listen_down is None:
            return None
        return (
            f"this instance cannot hear the update stream at {self.backend.url}, so it "
            "cannot confirm permissions; try again shortly"
        )

    def stamp(self, control: Control) -> Control:
        """``control`` with this instance's origin and serial, remembered until read back."""
        self._serial += 1
        stamped = dataclasses.replace(control, origin=self.origin, serial=self._serial)
        encode_entry(stamped)  # too big for the backend: PublishError now, not lost later
        if isinstance(stamped, Reauthorize):
            loop = self.hub._loop
            now = 0.0 if loop is None else loop.time()
            # Long enough to outlive a publish that is retried; a lost one must not
            # mask other instances' changes for ever.
            self._own[stamped.subject] = (stamped.serial, now + 2 * self.publish_timeout)
        return stamped

    async def flush(self) -> str:
        if self._publish_down is not None:
            raise PublishError(
                f"the backend at {self.backend.url} is not accepting updates "
                f"({self._publish_down}); they are kept and published when it is back"
            )
        target = self._enqueued
        if self._sent < target:
            loop = self.hub._loop
            assert loop is not None
            future: asyncio.Future[int] = loop.create_future()
            self._barriers.append((target, future))
            async with asyncio.timeout(self.publish_timeout):
                await future
        return f"{self.hub._epoch}.{self._last_position}"

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

    async def start(self) -> None:
        backend = self.backend
        epoch = await backend.connect()  # BackendUnavailable names the URL
        try:
            head = await backend.head()
        except Exception as exc:
            await backend.aclose()
            raise BackendUnavailable(
                f"cannot read the update stream at {backend.url}: {exc}"
            ) from exc
        self.hub._epoch, self.hub._seq = epoch, head
        self.hub._replay.reset(head)
        loop = self.hub._loop
        assert loop is not None
        self._tasks = [
            loop.create_task(self._listen(backend), name="refetch listener"),
            loop.create_task(self._publish_loop(backend), name="refetch publisher"),
        ]
        logger.info("UpdateService shares the update stream at %s (epoch %s)", backend.url, epoch)

    async def stop(self, grace: float) -> None:
        backend = self.backend
        self._stopping = True
        # redis-py can swallow a cancellation that lands inside a command
        # (redis/redis-py#2028): cancel again until the tasks are gone, and never
        # wait for ever on a driver.
        pending = set(self._tasks)
        for attempt in range(10):
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=grace / 10 if attempt else 0.5)
            if not pending:
                break
        if pending:
            logger.warning("%d backend task(s) ignored cancellation; left behind", len(pending))
        self._tasks = []
        # What was notified before close still goes out, if the broker takes it in time.
        outbox, self._outbox = list(self._outbox), deque()
        if outbox:
            try:
                async with asyncio.timeout(grace):
                    positions = await backend.publish([payload for _, payload, _ in outbox])
            except Exception as exc:
                logger.warning(
                    "%d update(s) not published to %s at close: %r", len(outbox), backend.url, exc
                )
                positions = []
            for i, (_, _, future) in enumerate(outbox):
                if future is None or future.done():
                    continue
                if i < len(positions):
                    future.set_result(f"{self.hub._epoch}.{positions[i]}")
                else:
                    future.set_exception(ServiceClosed("closed before the update was published"))
        for _, waiter in self._waiters:
            waiter.cancel()
        self._waiters.clear()
        self._settle_barriers(ServiceClosed("closed before everything was published"))
        if self._unconfirmed_timer is not None:
            self._unconfirmed_timer.cancel()
        await backend.aclose()

    def drain(self) -> None:
        backend = self.backend
        inbox = self.hub._inbox
        while inbox:
            update, future, _ = inbox.popleft()
            try:
                payload = encode_entry(update)
            except PublishError as exc:
                if future is not None:
                    future.set_exception(exc)
                else:
                    logger.error("%r dropped: %s", update, exc)
                continue
            if self._listen_down is not None:
                # Our listener cannot hear the broker: local clients hear it from us now.
                self._deliver_local(update)
            if self._publish_down is None and len(self._outbox) < self._outbox_limit:
                self._outbox.append((update, payload, future))
                self._enqueued += 1
                continue
            if self._listen_down is None:
                self._deliver_local(update)
            if future is not None:
                future.set_exception(
                    PublishError(
                        f"the backend at {backend.url} is not accepting updates "
                        f"({self._publish_down or 'too many waiting'}); local clients were told"
                    )
                )
            elif self._publish_down is not None:
                if len(self._unsent) == self._unsent.maxlen:
                    self._lost = True
                self._unsent.append(update)
            else:
                self._lost = True
        if self._outbox or self._lost:
            self._publish_wake.set()
        self.hub._flush()

    def _deliver_local(self, update: Update | Control) -> None:
        if not isinstance(update, Update):
            return  # a control message took effect here when it was made
        # No global position: the frame carries the newest cursor the client may
        # already hold, so a reconnect loses nothing and replays nothing twice.
        self.hub._mark(Update(update.type, update.key, update.audience, self.hub.cursor))
        self.hub._updates += 1

    async def _publish_loop(self, backend: Backend) -> None:
        backoff = Backoff()
        while not self._stopping:
            await self._publish_wake.wait()
            self._publish_wake.clear()
            while self._publish_down is not None or self._lost:
                if self._publish_down is not None:
                    await asyncio.sleep(backoff.next())
                try:
                    async with asyncio.timeout(self.publish_timeout):
                        await self._send_unsent(backend)
                except Exception as exc:
                    logger.debug("backend %s still unavailable: %r", backend.url, exc)
                    self._publish_down = repr(exc)
                    continue
                if self._publish_down is not None:
                    logger.warning("publishing to %s again", backend.url)
                self._publish_down = None
                backoff.reset()
            while self._outbox:
                batch = [self._outbox.popleft() for _ in range(min(500, len(self._outbox)))]
                try:
                    positions = await self._publish_batch(backend, batch)
                except _TimedOut as exc:
                    cause = exc.__cause__
                    failure = cause if isinstance(cause, Exception) else exc
                    self._publish_failed(backend, failure, batch, told=True)
                    self._publish_wake.set()
                    break
                except Exception as exc:
                    self._publish_failed(backend, exc, batch)
                    self._publish_wake.set()
                    break
                for (_, _, future), position in zip(batch, positions, strict=True):
                    if future is not None and not future.done():
                        future.set_result(f"{self.hub._epoch}.{position}")
                self._sent += len(batch)
                if positions:
                    self._last_position = positions[-1]
                self._settle_barriers()

    async def _publish_batch(
        self,
        backend: Backend,
        batch: list[tuple[Update | Control, bytes, asyncio.Future[str] | None]],
    ) -> list[int]:
        loop = self.hub._loop
        assert loop is not None
        task = loop.create_task(self._timed_publish(backend, [p for _, p, _ in batch]))
        done, _ = await asyncio.wait({task}, timeout=self.local_fallback_after)
        if done:
            return task.result()
        # The broker is slow to answer (a stalled connection, a reconnecting client):
        # local clients should not wait for it. What we told them, we do not repeat.
        for update, _, _ in batch:
            self._deliver_local(update)
        self.hub._flush()
        try:
            async with asyncio.timeout(self.publish_timeout):
                return await task
        except Exception as exc:
            raise _TimedOut from exc

    async def _timed_publish(self, backend: Backend, payloads: list[bytes]) -> list[int]:
        sent = time.monotonic()
        self._publishing += 1
        try:
            positions = await backend.publish(payloads)
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
        if self._lost:
            # More failed than we kept: nobody can tell what other instances missed.
            await backend.publish(
                [encode_resync_marker("updates were lost while a broker was away")]
            )
            self._lost = False
            self._unsent.clear()
        elif self._unsent:
            updates = list(self._unsent)
            await backend.publish([encode_entry(u) for u in updates])
            for _ in updates:
                self._unsent.popleft()
        else:
            await backend.ping()

    def _publish_failed(
        self,
        backend: Backend,
        exc: Exception,
        batch: list[tuple[Update | Control, bytes, asyncio.Future[str] | None]],
        told: bool = False,
    ) -> None:
        self._publish_down = repr(exc)
        logger.warning(
            "cannot publish to %s: %r; local clients are told directly, the rest is "
            "published when the broker is back",
            backend.url,
            exc,
        )
        waiting = list(self._outbox)
        self._outbox.clear()
        self._enqueued = self._sent  # what was waiting is kept below, not in the outbox
        self._settle_barriers(
            PublishError(f"cannot publish to {backend.url}: {exc!r}; kept for when it is back")
        )
        for i, (update, _, future) in enumerate(batch + waiting):
            if not (told and i < len(batch)):
                self._deliver_local(update)  # twice if the listener is down too: harmless
            if future is not None:
                if not future.done():
                    future.set_exception(
                        PublishError(
                            f"cannot publish to {backend.url}: {exc!r}; local clients were told"
                        )
                    )
            else:
                if len(self._unsent) == self._unsent.maxlen:
                    self._lost = True
                self._unsent.append(update)
        self.hub._flush()

    async def _listen(self, backend: Backend) -> None:
        backoff = Backoff()
        connected = True  # start() connected already
        while not self._stopping:
            try:
                if not connected:
                    epoch = await backend.connect()
                    if epoch != self.hub._epoch:
                        self._reset_stream(
                            epoch, await backend.head(), "the update stream was recreated"
                        )
                    connected = True
                    if self._listen_down is not None:
                        logger.warning(
                            "listening to %s again, from cursor %s", backend.url, self.hub.cursor
                        )
                        self._listen_down = None
                        if self._unconfirmed_timer is not None:
                            self._unconfirmed_timer.cancel()
                            self._unconfirmed_timer = None
                    backoff.reset()
                async for batch in backend.read(self.hub._seq):
                    if self._stopping:
                        return
                    self._receive(batch)
                raise ConnectionError("the backend's read() ended")
            except asyncio.CancelledError:
                raise
            except StreamGap as gap:
                logger.warning("updates were dropped before this instance read them: %s", gap)
                try:
                    head = await backend.head()
                except Exception:
                    connected = False
                    continue
                self._reset_stream(self.hub._epoch, head, "updates were dropped")
            except Exception as exc:
                if self._listen_down is None:
                    logger.warning(
                        "lost the update stream at %s: %r; local updates still reach local "
                        "clients; reconnecting",
                        backend.url,
                        exc,
                    )
                    self._listen_down = repr(exc)
                    self._watch_unconfirmed()
                connected = False
                await asyncio.sleep(backoff.next())

    def _receive(self, batch: Sequence[tuple[int, bytes]]) -> None:
        epoch = self.hub._epoch
        for position, payload in batch:
            if position <= self.hub._seq:
                continue  # read twice across a reconnect
            self.hub._seq = position
            try:
                update = decode_entry(payload)
            except ValueError as exc:
                logger.error("malformed entry %s in the update stream: %s", position, exc)
                update = "malformed entry in the update stream"
            if isinstance(update, Reauthorize | CloseStreams):
                self._on_control(update)
                continue
            if isinstance(update, str):
                self.hub._replay.reset(position)
                self.hub._resync_all(update)
                continue
            if update.type not in self.hub._type_set:
                update_logger.debug("ignoring update of undeclared type %r", update.type)
                continue
            update = Update(update.type, update.key, update.audience, f"{epoch}.{position}")
            self.hub._replay.append(position, update)
            sent = self._sent_at.pop(position, None)
            if sent is not None:
                self.lag = time.monotonic() - sent
            elif self._publishing and len(self._read_at) < 10_000:
                self._read_at[position] = time.monotonic()
            self.hub._mark(update, sent)
            self.hub._updates += 1
        self.hub._flush()
        if self._waiters:
            still = []
            for at, future in self._waiters:
                if at <= self.hub._seq:
                    if not future.done():
                        future.set_result(None)
                else:
                    still.append((at, future))
            self._waiters = still

    def _on_control(self, control: Control) -> None:
        """Apply a control message where it stands in the shared order."""
        own = control.origin == self.origin
        if isinstance(control, CloseStreams):
            if not own:  # ours ended the streams here when it was made
                self.hub._apply(control)
            return
        pending = self._own.get(control.subject)
        if own:
            if pending is not None and pending[0] > control.serial:
                return  # a newer change of ours is on its way and was applied already
            self._own.pop(control.subject, None)
            self.hub._apply(control)
            return
        loop = self.hub._loop
        assert loop is not None
        if pending is not None and pending[1] > loop.time():
            # Ours was made here already and comes later in the stream: it wins, and
            # applying this one now would widen the scopes until it is read back.
            return
        self._own.pop(control.subject, None)
        self.hub._apply(control)

    def _watch_unconfirmed(self) -> None:
        loop = self.hub._loop
        if loop is None or self._unconfirmed_timer is not None:
            return

        def check() -> None:
            self._unconfirmed_timer = None
            reason = self.unconfirmed
            if reason is not None and not self._stopping:
                self.hub._close_unconfirmed("permissions cannot be confirmed")

        self._unconfirmed_timer = loop.call_later(self.confirm_timeout, check)

    def _reset_stream(self, epoch: str, head: int, reason: str) -> None:
        self.hub._epoch, self.hub._seq = epoch, head
        self.hub._replay.reset(head)
        self.hub._resync_all(reason)

    def resume(
        self, conn: Connection, last_event_id: str, body: bytes, now: float
    ) -> tuple[bytes, int | None]:
        """The first frames for a resuming client, or the position to hold it at."""
        position = self.hub._position(last_event_id)
        if position is None:
            self.hub._resyncs += 1
            return body + encode_resync(self.hub.cursor, "unknown cursor"), None
        missed = self.hub._replay.since(position) if position <= self.hub._seq else None
        if missed is None:
            # Ahead of our listener (it came from a faster instance) or older than our
            # log: the backend can tell, asynchronously.
            return body, position
        return body + self.hub._replay_frame(conn, missed, now), None

    def hold(self, conn: Connection, position: int, now: float) -> None:
        # While the replay is fetched the connection counts as busy writing, so live
        # updates collect in its pending set and nothing overtakes the replay.
        if conn.writer is not None or conn.closing is not None:
            self.hub._abort(conn, "resync")  # hello is still on its way: let it retry
            return
        loop = self.hub._loop
        assert loop is not None
        task = loop.create_task(self._fetch_missed(position))
        conn.writer = task  # type: ignore[assignment]
        conn.busy_since = now
        task.add_done_callback(lambda t: self._after_hold(conn, t))

    async def _fetch_missed(self, position: int) -> tuple[list[Update], int] | str:
        backend = self.backend
        loop = self.hub._loop
        assert loop is not None
        try:
            if position > self.hub._seq:
                future: asyncio.Future[None] = loop.create_future()
                self._waiters.append((position, future))
                try:
                    async with asyncio.timeout(self.catch_up_timeout):
                        await future
                except TimeoutError:
                    return "unknown cursor"
                return [], position
            floor = self.hub._replay.floor
            if position >= floor:
                return [], position
            async with asyncio.timeout(self.catch_up_timeout):
                entries = await backend.replay(position, floor)
            if entries is None:
                return "cursor too old"
            older = []
            for entry_position, payload in entries:
                update = decode_entry(payload)
                if isinstance(update, str):
                    return update
                if not isinstance(update, Update):
                    continue  # a control message: the resuming client was authenticated since
                cursor = f"{self.hub._epoch}.{entry_position}"
                older.append(Update(update.type, update.key, update.audience, cursor))
            return older, floor
        except Exception as exc:
            logger.warning("cannot replay from %s: %r", backend.url, exc)
            return "cursor too old"

    def _after_hold(
        self, conn: Connection, task: asyncio.Task[tuple[list[Update], int] | str]
    ) -> None:
        conn.writer = None
        if task.cancelled() or conn.closing is not None:
            return
        loop = self.hub._loop
        assert loop is not None
        now = loop.time()
        result = task.result()
        # Updates that arrived while held are in the log too: rebuild from it.
        conn.pending.clear()
        conn.told = self.hub._marks
        missed = None if isinstance(result, str) else self.hub._replay.since(result[1])
        if missed is None:
            self.hub._resyncs += 1
            reason = result if isinstance(result, str) else "cursor too old"
            self.hub._write(conn, encode_resync(self.hub.cursor, reason), now)
            self.hub._settle(conn)
            return
        assert not isinstance(result, str)
        body = self.hub._replay_frame(conn, [*result[0], *missed], now)
        if body:
            self.hub._write(conn, body, now)
        self.hub._settle(conn)
