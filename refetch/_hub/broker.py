"""The broker sequencer: a hub's link to a shared backend, so many instances share one stream.

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
from collections.abc import AsyncIterator, Callable, Sequence

from .._backoff import Backoff
from .._cancel import cancel_until_gone
from .._codec import decode_entry, encode_entry
from .._control import STALE_REAUTHORIZE, CloseStreams, Control, Reauthorize
from .._cursor import Cursor
from .._exceptions import BackendUnavailable
from .._fanout.sink import CatchUp, Replay, Resync, Sink, Start
from .._update import Update
from ..backends._base import Backend, Entry, StreamGap
from .outbox import Outbox
from .sequencer import Item, Numbering, log_update
from .statistics import SequencerStatistics

logger = logging.getLogger("refetch")


class BrokerSequencer:
    """The sequencer of a hub with a backend: its publisher and listener tasks, and replay."""

    #: The fan-out, from start() on (it is built on the loop the hub starts on).
    _sink: Sink

    def __init__(
        self,
        backend: Backend,
        types: frozenset[str],
        replay_size: int,
        replay_age: float,
    ) -> None:
        self.backend = backend
        self._types = types
        self._numbering = Numbering(replay_size, replay_age)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._catching_up: set[asyncio.Task[Callable[[], Replay | Resync]]] = set()
        # Updates wait in the outbox for the publisher task; the listener task reads
        # the shared stream and delivers. While either is cut off, local updates go
        # straight to local clients.
        self._outbox = Outbox(
            backend,
            deliver_local=self._deliver_local,
            listening=lambda: self._listen_down is None,
            cursor_of=lambda position: str(Cursor(self._numbering.epoch, position)),
        )
        # Control messages: this instance's name in the stream, its own serials, and
        # per subject the newest reauthorize of ours not read back yet (with a
        # deadline), which wins over anything read before it.
        self.origin = secrets.token_hex(6)
        self._serial = 0
        self._own: dict[str, tuple[int, float]] = {}
        self._unconfirmed_timer: asyncio.TimerHandle | None = None
        self._listen_down: str | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.catch_up_timeout = 5.0
        #: Without the broker, an instance cannot hear revocations made elsewhere:
        #: after this long its authenticated streams are ended (fail closed).
        self.confirm_timeout = 1.0

    @property
    def cursor(self) -> str:
        return self._numbering.cursor

    @property
    def unconfirmed(self) -> str | None:
        """Why permissions cannot be confirmed now (the broker is out of hearing), or None."""
        if self._listen_down is None:
            return None
        return (
            f"this instance cannot hear the update stream at {self.backend.url}, so it "
            "cannot confirm permissions; try again shortly"
        )

    def share(self, control: Control) -> Control:
        """``control`` with this instance's origin and serial, remembered until read back."""
        self._serial += 1
        stamped = dataclasses.replace(control, origin=self.origin, serial=self._serial)
        encode_entry(stamped)  # too big for the backend: PublishError now, not lost later
        if isinstance(stamped, Reauthorize):
            loop = self._loop
            now = 0.0 if loop is None else loop.time()
            # Long enough to outlive a publish that is retried; a lost one must not
            # mask other instances' changes for ever.
            self._own[stamped.subject] = (stamped.serial, now + 2 * self._outbox.publish_timeout)
        return stamped

    def statistics(self) -> SequencerStatistics:
        return SequencerStatistics(
            cursor=self.cursor,
            replay_log=len(self._numbering.log),
            publisher_down=self._outbox.down,
            listener_down=self._listen_down,
            backend=self.backend.url,
            backend_lag=self._outbox.lag,
        )

    def submit(self, items: Sequence[Item]) -> None:
        self._outbox.put(items)

    async def flush(self, timeout: float | None = None) -> str:  # noqa: ASYNC109
        return await self._outbox.flush(timeout)

    def _deliver_local(self, update: Update | Control) -> None:
        if not isinstance(update, Update):
            return  # a control message took effect here when it was made
        # No global position: the frame carries the newest cursor the client may
        # already hold, so a reconnect loses nothing and replays nothing twice.
        cursor = self._numbering.cursor
        self._sink.deliver(Update(update.type, update.key, update.audience, cursor))

    async def start(self, loop: asyncio.AbstractEventLoop, sink: Sink) -> None:
        self._loop = loop
        self._sink = sink
        backend = self.backend
        epoch = await backend.connect()  # BackendUnavailable names the URL
        try:
            head = await backend.head()
        except Exception as exc:
            await backend.aclose()
            raise BackendUnavailable(
                f"cannot read the update stream at {backend.url}: {exc}"
            ) from exc
        self._numbering.reset(epoch, head)
        self._tasks = [
            loop.create_task(self._listen(backend), name="refetch listener"),
            loop.create_task(self._outbox.run(), name="refetch publisher"),
        ]
        logger.info("UpdateService shares the update stream at %s (epoch %s)", backend.url, epoch)

    async def stop(self, grace: float) -> None:
        backend = self.backend
        self._stopping = True
        pending = await cancel_until_gone(self._tasks, grace)
        if pending:
            logger.warning("%d backend task(s) ignored cancellation; left behind", len(pending))
        self._tasks = []
        # What was notified before close still goes out, if the broker takes it in time.
        await self._outbox.stop(grace)
        for _, waiter in self._waiters:
            waiter.cancel()
        self._waiters.clear()
        catching_up = set(self._catching_up)
        for catch_up in catching_up:
            catch_up.cancel()
        if catching_up:
            await asyncio.wait(catching_up, timeout=grace)
        if self._unconfirmed_timer is not None:
            self._unconfirmed_timer.cancel()
        await backend.aclose()

    async def _listen(self, backend: Backend) -> None:
        backoff = Backoff()
        connected = True  # start() connected already
        while not self._stopping:
            try:
                if not connected:
                    epoch = await backend.connect()
                    if epoch != self._numbering.epoch:
                        self._reset_stream(
                            epoch, await backend.head(), "the update stream was recreated"
                        )
                    connected = True
                    if self._listen_down is not None:
                        logger.warning(
                            "listening to %s again, from cursor %s",
                            backend.url,
                            self._numbering.cursor,
                        )
                        self._listen_down = None
                        if self._unconfirmed_timer is not None:
                            self._unconfirmed_timer.cancel()
                            self._unconfirmed_timer = None
                    backoff.reset()
                reader = aiter(backend.read(self._numbering.position))
                while True:
                    batch = await self._next_batch(reader, backend)
                    if self._stopping:
                        return
                    self._receive(batch)
            except asyncio.CancelledError:
                raise
            except StreamGap as gap:
                logger.warning("updates were dropped before this instance read them: %s", gap)
                try:
                    head = await backend.head()
                except Exception:
                    connected = False
                    continue
                self._reset_stream(self._numbering.epoch, head, "updates were dropped")
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

    @property
    def silence_timeout(self) -> float | None:
        """How long the listener waits for a sign of life before it counts the broker lost."""
        liveness = self.backend.liveness
        # One second of margin over the backend's promise: a slow round trip is not a stall.
        return None if liveness is None else liveness + 1.0

    async def _next_batch(
        self, reader: AsyncIterator[list[Entry]], backend: Backend
    ) -> list[Entry]:
        """The next batch; a broker silent for ``silence_timeout`` is lost (it may be stopped:
        alive, its connections open, answering nothing)."""
        silence = self.silence_timeout
        if silence is None:
            try:
                return await anext(reader)
            except StopAsyncIteration:
                raise ConnectionError("the backend's read() ended") from None
        loop = self._loop
        assert loop is not None
        heard = loop.time()
        # Counted lost the moment the deadline passes, before the read is torn down
        # (which may itself wait on the silent connection, boundedly).
        watchdog = loop.call_later(silence, self._silent, heard)
        try:
            async with asyncio.timeout(silence):
                return await anext(reader)
        except StopAsyncIteration:
            raise ConnectionError("the backend's read() ended") from None
        except TimeoutError:
            self._silent(heard)  # if the watchdog did not run first
            raise ConnectionError(
                f"no word from {backend.url} for {silence:g} s (stalled?)"
            ) from None
        finally:
            watchdog.cancel()

    def _silent(self, heard: float) -> None:
        if self._listen_down is not None or self._stopping:
            return
        logger.warning(
            "no word from the update stream at %s for %.1f s: counted as lost; local "
            "updates still reach local clients; reconnecting",
            self.backend.url,
            self.silence_timeout,
        )
        self._listen_down = "silent (stalled?)"
        self._watch_unconfirmed(since=heard)

    def _receive(self, batch: Sequence[tuple[int, bytes]]) -> None:
        for position, payload in batch:
            if position <= self._numbering.position:
                continue  # read twice across a reconnect
            self._numbering.position = position
            try:
                update = decode_entry(payload)
            except ValueError as exc:
                logger.error("malformed entry %s in the update stream: %s", position, exc)
                update = "malformed entry in the update stream"
            if isinstance(update, Reauthorize | CloseStreams):
                self._on_control(update)
                continue
            if isinstance(update, str):
                self._numbering.log.reset(position)
                self._sink.resync_all(update, self._numbering.cursor)
                continue
            if update.type not in self._types:
                logger.debug("ignoring update of undeclared type %r", update.type)
                continue
            update = self._numbering.numbered(update, position)
            self._numbering.log.append(position, update)
            sent = self._outbox.read_back(position)
            log_update(update, self._sink.deliver(update, sent))
        if self._waiters:
            still = []
            for at, future in self._waiters:
                if at <= self._numbering.position:
                    if not future.done():
                        future.set_result(None)
                else:
                    still.append((at, future))
            self._waiters = still

    def _on_control(self, control: Control) -> None:
        """Apply a control message where it stands in the shared order."""
        own = control.origin == self.origin
        if isinstance(control, CloseStreams):
            if own and control.reason == STALE_REAUTHORIZE and control.subject is not None:
                # One of our reauthorizes, published late as a close: it no longer
                # outranks what other instances changed meanwhile, and ends the streams
                # here too, so they ask the app again.
                pending = self._own.get(control.subject)
                if pending is not None and pending[0] <= control.serial:
                    self._own.pop(control.subject, None)
                self._sink.apply(control)
            elif not own:  # ours ended the streams here when it was made
                self._sink.apply(control)
            return
        pending = self._own.get(control.subject)
        if own:
            if pending is not None and pending[0] > control.serial:
                return  # a newer change of ours is on its way and was applied already
            self._own.pop(control.subject, None)
            self._sink.apply(control)
            return
        loop = self._loop
        assert loop is not None
        if pending is not None and pending[1] > loop.time():
            # Ours was made here already and comes later in the stream: it wins, and
            # applying this one now would widen the scopes until it is read back.
            return
        self._own.pop(control.subject, None)
        self._sink.apply(control)

    def _watch_unconfirmed(self, since: float | None = None) -> None:
        """End authenticated streams ``confirm_timeout`` after the broker was last heard
        (``since``; None: now), unless it is heard again first."""
        loop = self._loop
        if loop is None or self._unconfirmed_timer is not None:
            return

        def check() -> None:
            self._unconfirmed_timer = None
            reason = self.unconfirmed
            if reason is not None and not self._stopping:
                self._sink.close_unconfirmed("permissions cannot be confirmed")

        now = loop.time()
        delay = self.confirm_timeout - (now - (now if since is None else since))
        self._unconfirmed_timer = loop.call_later(max(0.0, delay), check)

    def _reset_stream(self, epoch: str, head: int, reason: str) -> None:
        self._numbering.reset(epoch, head)
        self._sink.resync_all(reason, self._numbering.cursor)

    def resume(self, last_event_id: str) -> Start:
        """How a resuming client starts: its replay, a resync, or a catch-up to wait for."""
        numbering = self._numbering
        position = numbering.position_of(last_event_id)
        if position is None:
            return Resync("unknown cursor")
        missed = numbering.log.since(position) if position <= numbering.position else None
        if missed is not None:
            return Replay(list(missed))
        # Ahead of our listener (it came from a faster instance) or older than our
        # log: the backend can tell, asynchronously.
        loop = self._loop
        assert loop is not None
        task = loop.create_task(self._catch_up(position), name="refetch catch-up")
        self._catching_up.add(task)
        task.add_done_callback(self._catching_up.discard)
        return CatchUp(task)

    async def _catch_up(self, position: int) -> Callable[[], Replay | Resync]:
        epoch = self._numbering.epoch
        result = await self._fetch_missed(position)

        def finish() -> Replay | Resync:
            # Called on the loop once the fetch is done: what arrived meanwhile is in
            # the log, so the replay is the fetched part plus the log since its end.
            if self._numbering.epoch != epoch:
                # The stream was recreated during the fetch: positions from before
                # name nothing in the new one (the log was reset, not extended).
                return Resync("the update stream was recreated")
            if isinstance(result, str):
                return Resync(result)
            older, upto = result
            missed = self._numbering.log.since(upto)
            if missed is None:
                return Resync("cursor too old")
            return Replay([*older, *missed])

        return finish

    async def _fetch_missed(self, position: int) -> tuple[list[Update], int] | str:
        backend = self.backend
        loop = self._loop
        assert loop is not None
        try:
            if position > self._numbering.position:
                future: asyncio.Future[None] = loop.create_future()
                self._waiters.append((position, future))
                try:
                    async with asyncio.timeout(self.catch_up_timeout):
                        await future
                except TimeoutError:
                    return "unknown cursor"
                return [], position
            floor = self._numbering.log.floor
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
                older.append(self._numbering.numbered(update, entry_position))
            return older, floor
        except Exception as exc:
            logger.warning("cannot replay from %s: %r", backend.url, exc)
            return "cursor too old"
