"""The UpdateService: the hub every part of an app calls ``notify()`` on."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import secrets
import signal
import threading
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from ._auth import Principal
from ._connection import Connection, ConnectionInfo
from ._control import CloseStreams, Control, Reauthorize
from ._exceptions import ConfigurationError, ServiceClosed, UnknownUpdateType
from ._gc import FreezePolicy
from ._latency import BOUNDS, LatencyHistogram
from ._log import update_delivered
from ._processes import warn_if_split
from ._relay import Relay
from ._replay import ReplayLog
from ._sse import PING, encode_hello, encode_invalidate, encode_resync
from ._types import Send
from ._update import Update
from .backends._base import Backend, backend_from_url

logger = logging.getLogger("refetch")
update_logger = logging.getLogger("refetch.updates")

_SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: What to do about a hub that was never started; said by the endpoint's 503 too.
NOT_STARTED_FIX = (
    "the UpdateService was never started: pass lifespan=updates.lifespan to your app, "
    "or `async with updates:` in your own lifespan"
)


@dataclass(frozen=True, slots=True)
class Statistics:
    """A snapshot of the hub, for debugging and metrics."""

    connections: int
    updates: int
    frames: int
    deliveries: int
    coalesced: int
    pings: int
    resyncs: int
    replays: int
    slow_disconnects: int
    replay_log: int
    cursor: str
    #: With a backend: why publishing / listening is failing right now (None: fine).
    publisher_down: str | None = None
    listener_down: str | None = None
    #: Per update type: updates delivered, frames that named the type, open streams.
    updates_by_type: dict[str, int] = field(default_factory=dict)
    deliveries_by_type: dict[str, int] = field(default_factory=dict)
    connections_by_type: dict[str, int] = field(default_factory=dict)
    #: How long updates waited, from notify() (with a backend: from its publish) until
    #: an invalidate frame carried them out: counts per bucket of ``latency_bounds``
    #: seconds, the last one unbounded, and the sum. One count per live frame written
    #: (not replays: what a resuming client missed is as old as its absence).
    latency_bounds: tuple[float, ...] = BOUNDS
    latency_counts: tuple[int, ...] = ()
    latency_sum: float = 0.0
    #: The backend's URL (without password); None: one process, no broker.
    backend: str | None = None
    #: With a backend: seconds from publishing an update to reading it back, last seen.
    backend_lag: float | None = None
    #: "new", "running", "draining" (shutting down: no new streams) or "closed".
    state: str = "running"


def _terminate(signum: int) -> None:
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


class UpdateService:
    """The central notification hub.

    ``notify(type, key=None, audience=None)`` is callable from anywhere (async code,
    sync code, other threads), returns at once and never fails because of a client.
    Connections are indexed by type and by scope, so a notify costs what it reaches.
    """

    def __init__(
        self,
        types: Iterable[str] | type[enum.Enum],
        *,
        min_interval: float = 0.1,
        heartbeat: float = 15.0,
        retry: float = 2.0,
        replay_size: int = 10_000,
        replay_age: float = 600.0,
        max_keys: int = 64,
        send_timeout: float = 30.0,
        close_on_signals: bool = True,
        backend: str | Backend | None = None,
        gc_freeze: bool = True,
    ) -> None:
        if isinstance(types, str):
            # A string is an iterable of its letters: "projects" would declare eight types.
            raise ConfigurationError(
                f"types must be a list of names, not one string: write "
                f'UpdateService(["{types}"]), not UpdateService("{types}")'
            )
        names = [t.value if isinstance(t, enum.Enum) else t for t in types]
        if not names:
            raise ConfigurationError("declare at least one update type, e.g. types=['projects']")
        for name in names:
            if not isinstance(name, str) or not name or "," in name or name.strip() != name:
                raise ConfigurationError(
                    f"update type {name!r} must be a non-empty string without commas or spaces"
                )
        if len(set(names)) != len(names):
            raise ConfigurationError(f"update types are declared twice: {names}")
        if min_interval < 0:
            raise ConfigurationError("min_interval must be >= 0 seconds")
        if heartbeat <= 0:
            raise ConfigurationError("heartbeat must be > 0 seconds")
        if replay_size < 0 or replay_age < 0:
            raise ConfigurationError("replay_size and replay_age must be >= 0")
        if max_keys < 1:
            raise ConfigurationError("max_keys must be >= 1")
        self.types: tuple[str, ...] = tuple(names)
        self._type_set = frozenset(names)
        self.min_interval = min_interval
        self.heartbeat = heartbeat
        self.retry_ms = int(retry * 1000)
        self.max_keys = max_keys
        self.send_timeout = send_timeout
        self.close_on_signals = close_on_signals
        if isinstance(backend, str):
            backend = backend_from_url(backend)
        elif backend is not None and not isinstance(backend, Backend):
            raise ConfigurationError(
                f"backend must be a URL (redis://..., postgresql://..., nats://...) or a "
                f"Backend object, not {backend!r}"
            )
        # None: one process, the hub numbers updates itself (the fast path).
        self._relay: Relay | None = None if backend is None else Relay(self, backend)

        # A random epoch tells this run's cursors apart from any other run's.
        self._epoch = secrets.token_hex(4)
        self._seq = 0
        self._replay = ReplayLog(replay_size, replay_age)

        # (update or control message, future of publish(), time.monotonic() of the notify)
        self._inbox: deque[tuple[Update | Control, asyncio.Future[str] | None, float]] = deque()
        self._wakeup_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        # new -> running -> draining -> closed. Draining starts with the shutdown
        # signal: new streams are refused, notify() and publish() still work.
        self._state = "new"
        self._warned_not_started = False

        self._connections: set[Connection] = set()
        # Open streams kept out of the cyclic GC's full collections (refetch/_gc.py).
        self._gc = FreezePolicy() if gc_freeze else None
        self._by_type: dict[str, set[Connection]] = {t: set() for t in names}
        self._by_scope: dict[str, set[Connection]] = {}
        # Subscribers with nothing to write and no write scheduled: the only ones an
        # update for everyone has to touch. The others merge it in when they write.
        self._idle: dict[str, set[Connection]] = {t: set() for t in names}
        # Updates for everyone, per type, numbered by ``_marks`` (every merged update
        # counts, with or without a broker position): the last one, the last one for
        # the whole type, and the newest keys (max_keys + 1 of them are enough to
        # tell "these keys" from "too many: the whole type").
        self._marks = 0
        self._type_last: dict[str, int] = dict.fromkeys(names, 0)
        self._type_whole: dict[str, int] = dict.fromkeys(names, 0)
        self._type_keys: dict[str, deque[tuple[int, str]]] = {
            t: deque(maxlen=max_keys + 1) for t in names
        }
        # (mark, time.monotonic() of its notify) of the newest updates for everyone,
        # per type: how long the oldest news of a frame waited, for the histogram.
        self._type_times: dict[str, deque[tuple[int, float]]] = {
            t: deque(maxlen=max_keys + 1) for t in names
        }
        self._latency = LatencyHistogram()
        self._updates_by_type: dict[str, int] = dict.fromkeys(names, 0)
        self._deliveries_by_type: dict[str, int] = dict.fromkeys(names, 0)
        self._dirty: list[Connection] = []
        self._buckets: dict[float, tuple[asyncio.TimerHandle, list[Connection]]] = {}
        self._tick_handle: asyncio.TimerHandle | None = None
        self._drained = asyncio.Event()
        # subject -> (loop time, principal) of recent reauthorize() calls, for streams
        # authenticated just before one of them; forgotten after a minute.
        self._reauthorized: dict[str, tuple[float, Principal]] = {}
        self._previous_handlers: dict[int, Any] = {}

        self._updates = 0
        self._frames = 0
        self._deliveries = 0
        self._coalesced = 0
        self._pings = 0
        self._resyncs = 0
        self._replays = 0
        self._slow = 0

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        if self._state != "new":
            raise ServiceClosed("an UpdateService can be started once")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self._relay is not None:
            await self._relay.start()
        else:
            warn_if_split()
        self._state = "running"
        if self._gc is not None:
            self._gc.start()
        self._schedule_tick()
        if self.close_on_signals and threading.current_thread() is threading.main_thread():
            self._chain_signal_handlers()
        if self._inbox:
            self._wake()
        logger.debug("UpdateService started (types: %s)", ", ".join(self.types))

    async def aclose(self, grace: float = 5.0) -> None:
        """End every open stream, then stop. Safe to call twice."""
        if self._state == "closed":
            return
        was_running = self._state in ("running", "draining")
        self._state = "closed"
        self._restore_signal_handlers()
        if not was_running:
            return
        self._drain()  # deliver what was notified before close
        self.close_streams("shutdown")
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        for timer, _ in self._buckets.values():
            timer.cancel()
        self._buckets.clear()
        if self._connections:
            try:
                await asyncio.wait_for(self._drained.wait(), grace)
            except TimeoutError:
                logger.warning(
                    "%d stream(s) did not end within %.1fs of close",
                    len(self._connections),
                    grace,
                )
        if self._relay is not None:
            await self._relay.stop(grace)
        if self._gc is not None:
            self._gc.close()

    async def __aenter__(self) -> UpdateService:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Use as (or inside) a Starlette/FastAPI ``lifespan``."""
        async with self:
            yield

    def close_streams(self, reason: str = "shutdown", *, subject: str | None = None) -> int:
        """End open streams now: all, or those of one ``subject`` (e.g. after sign-out).

        Clients reconnect with their cursor and are authenticated again, so a
        signed-out browser gets 401 and the user's other sessions carry on. With a
        backend, a ``subject``'s streams are ended on every instance (in order with
        the updates; ``await flush()`` waits until the other instances can hear it).
        ``close_streams()`` (all streams, reason ``"shutdown"``) also starts
        *draining*: from then on new streams are answered 503, so clients that
        reconnect at once cannot keep the server from exiting. Any other reason
        without a subject ends every stream and lets the clients back in.
        Returns the number of streams ended here.
        """
        if subject is None and reason == "shutdown" and self._state == "running":
            self._state = "draining"
            logger.info(
                "UpdateService draining: %d stream(s) ended, new streams are answered 503",
                len(self._connections),
            )
        control = None
        if subject is not None and self._relay is not None and self._state != "closed":
            control = self._relay.stamp(CloseStreams(subject, reason))
        ended = self._close_local(reason, subject)
        if control is not None:
            self._inbox.append((control, None, time.monotonic()))
            self._wake()
        return ended

    def _close_local(self, reason: str, subject: str | None) -> int:
        ended = 0
        for conn in list(self._connections):
            if subject is None or conn.principal.subject == subject:
                self._abort(conn, reason)
                ended += 1
        return ended

    def _close_unconfirmed(self, reason: str) -> int:
        """End every stream with a subject: its permissions can no longer be confirmed."""
        ended = 0
        for conn in list(self._connections):
            if conn.principal.subject is not None and conn.closing is None:
                self._abort(conn, reason)
                ended += 1
        if ended:
            logger.warning("ended %d authenticated stream(s): %s", ended, reason)
        return ended

    def _chain_signal_handlers(self) -> None:
        # uvicorn waits for open responses to finish *before* it runs the lifespan
        # shutdown, and an SSE response never finishes by itself: so the hub ends
        # its streams on the signal, then hands the signal on to the server.
        loop = self._loop
        assert loop is not None

        def handler(signum: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(self.close_streams, "shutdown")
            previous = self._previous_handlers.get(signum)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL and signum == signal.SIGINT:
                raise KeyboardInterrupt
            elif previous == signal.SIG_DFL:
                # No server handles SIGTERM: terminate, as the default action would,
                # right after the streams are told to end (swallowing it would leave
                # the process running).
                loop.call_soon_threadsafe(_terminate, signum)

        for signum in _SHUTDOWN_SIGNALS:
            # ValueError/OSError: not the main thread, or a platform without the signal.
            with contextlib.suppress(ValueError, OSError):
                self._previous_handlers[signum] = signal.signal(signum, handler)
        self._signal_handler = handler

    def _restore_signal_handlers(self) -> None:
        for signum, previous in self._previous_handlers.items():
            if signal.getsignal(signum) is getattr(self, "_signal_handler", None):
                signal.signal(signum, previous)
        self._previous_handlers.clear()

    # -- notify --------------------------------------------------------------------

    def notify(
        self,
        type: str | enum.Enum,
        key: str | int | None = None,
        *,
        audience: Iterable[str] | str | None = None,
    ) -> None:
        """Tell every client that may see it that ``type`` (or one ``key`` of it) changed.

        Thread-safe and non-blocking. Raises only for an undeclared type.
        """
        update = self._make_update(type, key, audience)
        if self._state == "closed":
            logger.warning("notify(%r) after the UpdateService was closed: dropped", update.type)
            return
        if self._state == "new" and not self._warned_not_started:
            self._warned_not_started = True
            if not _warn_if_never_started(update.type):
                logger.warning(
                    "notify(%r) before the UpdateService was started: it and later ones wait "
                    "for start(). %s",
                    update.type,
                    NOT_STARTED_FIX,
                )
        self._inbox.append((update, None, time.monotonic()))
        self._wake()

    async def publish(
        self,
        type: str | enum.Enum,
        key: str | int | None = None,
        *,
        audience: Iterable[str] | str | None = None,
    ) -> str:
        """Like ``notify()``, but returns the update's cursor once it is published."""
        update = self._make_update(type, key, audience)
        if self._state == "new":
            raise ServiceClosed(
                f"publish() before start(): {NOT_STARTED_FIX} (a process that serves no "
                "streams publishes with refetch.Publisher(url))"
            )
        if self._state == "closed":
            raise ServiceClosed("the UpdateService is closed")
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inbox.append((update, future, time.monotonic()))
        self._wake()
        return await future

    def _make_update(
        self,
        type_: str | enum.Enum,
        key: str | int | None,
        audience: Iterable[str] | str | None,
    ) -> Update:
        name = type_.value if isinstance(type_, enum.Enum) else type_
        if name not in self._type_set:
            raise UnknownUpdateType([str(name)], list(self.types))
        if audience is not None:
            audience = frozenset((audience,)) if isinstance(audience, str) else frozenset(audience)
        return Update(name, None if key is None else str(key), audience)

    def _wake(self) -> None:
        loop = self._loop
        if loop is None or self._wakeup_pending:
            return
        self._wakeup_pending = True
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(self._drain)
        else:
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody left to tell
                self._wakeup_pending = False

    def _drain(self) -> None:
        self._wakeup_pending = False
        if self._relay is not None:
            self._relay.drain()
            return
        inbox = self._inbox
        while inbox:
            update, future, at = inbox.popleft()
            if not isinstance(update, Update):
                continue  # control messages are queued for a backend only
            self._seq += 1
            cursor = f"{self._epoch}.{self._seq}"
            update = Update(update.type, update.key, update.audience, cursor)
            self._replay.append(self._seq, update)
            self._mark(update, at)
            self._updates += 1
            if future is not None and not future.done():
                future.set_result(cursor)
        self._flush()

    def _mark(self, update: Update, at: float | None = None) -> int:
        """Merge one update in; ``at`` is when it was notified (time.monotonic()), else now."""
        reached = self._merge(update, time.monotonic() if at is None else at)
        self._updates_by_type[update.type] += 1
        if update_logger.isEnabledFor(logging.DEBUG):
            update_delivered(update, reached)
        return reached

    def _merge(self, update: Update, at: float) -> int:
        type_, key, cursor, audience = update.type, update.key, update.cursor, update.audience
        self._marks += 1
        if audience is None:
            # For everyone: O(1) plus the subscribers that were idle. Under a storm
            # nearly all of them already wait for their next write, and merge this
            # update in then (``_news``), so a notify does not walk every connection.
            mark = self._marks
            self._type_last[type_] = mark
            if key is None:
                self._type_whole[type_] = mark
            else:
                self._type_keys[type_].append((mark, key))
            self._type_times[type_].append((mark, at))
            subscribers = len(self._by_type[type_])
            idle = self._idle[type_]
            self._coalesced += subscribers - len(idle)
            for conn in list(idle):
                self._schedule(conn)
            return subscribers
        if len(audience) == 1:
            (scope,) = audience
            candidates = [c for c in self._by_scope.get(scope, ()) if type_ in c.types]
        else:
            found: set[Connection] = set()
            for scope in audience:
                found.update(self._by_scope.get(scope, ()))
            candidates = [c for c in found if type_ in c.types]
        reached = 0
        max_keys = self.max_keys
        for conn in candidates:
            reached += 1
            if not conn.pending:
                conn.pending_since = at
            if conn.add(type_, key, cursor, max_keys):
                self._coalesced += 1
            if not conn.scheduled and conn.writer is None:
                self._schedule(conn)
        return reached

    def _schedule(self, conn: Connection) -> None:
        for type_ in conn.types:
            self._idle[type_].discard(conn)
        conn.scheduled = True
        self._dirty.append(conn)

    def _rest(self, conn: Connection) -> None:
        for type_ in conn.types:
            self._idle[type_].add(conn)

    def _has_news(self, conn: Connection) -> bool:
        if conn.pending:
            return True
        told = conn.told
        type_last = self._type_last
        return any(type_last[t] > told for t in conn.types)

    def _settle(self, conn: Connection) -> None:
        """After a write: schedule the next one if there is news, else wait idle."""
        if conn.closing is not None or conn.writer is not None or conn.scheduled:
            return
        if self._has_news(conn):
            self._schedule(conn)
            self._wake()
        else:
            self._rest(conn)

    def _news(self, told: int, types: frozenset[str]) -> dict[str, set[str] | None]:
        """What was sent to everyone, per type of ``types``, since mark ``told``."""
        news: dict[str, set[str] | None] = {}
        for type_ in self.types:
            if type_ not in types or self._type_last[type_] <= told:
                continue
            if self._type_whole[type_] > told:
                news[type_] = None
                continue
            log = self._type_keys[type_]
            if len(log) == log.maxlen and log[0][0] > told:
                news[type_] = None  # more than max_keys keys since: the whole type
                continue
            keys: set[str] = set()
            for mark, key in reversed(log):
                if mark <= told:
                    break
                keys.add(key)
            news[type_] = keys
        return news

    # -- writing -------------------------------------------------------------------

    def _flush(self, now: float | None = None) -> None:
        if not self._dirty:
            return
        loop = self._loop
        assert loop is not None
        if now is None:
            now = loop.time()
        dirty, self._dirty = self._dirty, []
        frames: dict[object, _Frame] = {}
        interval = self.min_interval
        for conn in dirty:
            if conn.closing is not None:
                conn.scheduled = False
                continue
            due = conn.last_invalidate + interval
            if due > now:
                self._defer(conn, due)
                continue
            conn.scheduled = False
            if conn.writer is not None:
                continue  # _after_write settles it
            if self._has_news(conn):
                self._write_pending(conn, now, frames)
            else:
                self._rest(conn)
        if frames:
            self._account(frames)

    def _account(self, frames: dict[object, _Frame]) -> None:
        # Once per distinct frame, not per stream: a fan-out to thousands of streams
        # shares a handful of frames.
        written = time.monotonic()
        by_type = self._deliveries_by_type
        for frame in frames.values():
            for type_ in frame.types:
                by_type[type_] += frame.uses
            if frame.oldest is not None and frame.untargeted:
                self._latency.observe(written - frame.oldest, frame.untargeted)

    def _defer(self, conn: Connection, due: float) -> None:
        # Deadlines are rounded up to a tenth of min_interval, so a burst that marks
        # thousands of connections arms a handful of timers, not one per connection.
        grain = self.min_interval / 10
        at = math.ceil(due / grain) * grain
        entry = self._buckets.get(at)
        if entry is None:
            loop = self._loop
            assert loop is not None
            entry = self._buckets[at] = (loop.call_at(at, self._fire, at), [])
        entry[1].append(conn)

    def _fire(self, at: float) -> None:
        loop = self._loop
        assert loop is not None
        _, bucket = self._buckets.pop(at)
        for conn in bucket:
            if conn.writer is not None:
                conn.scheduled = False  # _after_write reschedules it
            else:
                self._dirty.append(conn)
        self._flush(max(loop.time(), at))

    def _write_pending(self, conn: Connection, now: float, frames: dict[object, _Frame]) -> None:
        # Everything merged so far is in this frame, so its id is the hub's cursor;
        # connections that were last told at the same mark share one encoded frame.
        told, conn.told = conn.told, self._marks
        targeted, _ = conn.take()
        signature: object = (told, conn.types)
        if targeted:
            signature = (
                told,
                conn.types,
                tuple((t, None if k is None else frozenset(k)) for t, k in targeted.items()),
            )
        cached = frames.get(signature)
        if cached is None:
            pending = self._news(told, conn.types)
            oldest = self._oldest_news(told, pending)
            for type_, keys in targeted.items():
                if type_ not in pending:
                    pending[type_] = keys
                elif keys is None or pending[type_] is None:
                    pending[type_] = None
                else:
                    merged = pending[type_] or set()
                    merged |= keys
                    pending[type_] = None if len(merged) > self.max_keys else merged
            cached = frames[signature] = _Frame(
                encode_invalidate(self.cursor, pending), tuple(pending), oldest
            )
        cached.uses += 1
        if targeted:
            waited = conn.pending_since
            if cached.oldest is not None:
                waited = min(waited, cached.oldest)
            self._latency.observe(time.monotonic() - waited)
        else:
            cached.untargeted += 1
        conn.last_invalidate = now
        conn.frames += 1
        self._frames += 1
        self._deliveries += len(cached.types)
        self._write(conn, cached.body, now)
        if conn.writer is None:
            self._rest(conn)

    def _oldest_news(self, told: int, news: dict[str, set[str] | None]) -> float | None:
        """When the oldest update for everyone in ``news`` (marked after ``told``) was notified."""
        oldest: float | None = None
        for type_ in news:
            times = self._type_times[type_]
            if not times or times[-1][0] <= told:
                continue
            # Past the deque's reach the oldest kept one stands in (an underestimate).
            at = times[-1][1]
            for mark, when in reversed(times):
                if mark <= told:
                    break
                at = when
            if oldest is None or at < oldest:
                oldest = at
        return oldest

    def _write(self, conn: Connection, frame: bytes, now: float) -> None:
        try:
            writer = conn.write(frame, now)
        except Exception as exc:  # the server refused the write: the client is gone
            logger.debug("write to a stream failed: %r", exc)
            self._abort(conn, "send failed")
            return
        if writer is not None:
            writer.add_done_callback(lambda task: self._after_write(conn, task))

    def _after_write(self, conn: Connection, task: asyncio.Task[None]) -> None:
        conn.writer = None
        if task.cancelled() or conn.closing is not None:
            return
        if task.exception() is not None:
            self._abort(conn, "send failed")
            return
        self._settle(conn)

    def _abort(self, conn: Connection, reason: str) -> None:
        if conn.closing is None:
            conn.closing = reason
        if conn.writer is not None:  # a write is stuck: its socket is full
            conn.writer.cancel()
            conn.drop()
        if conn.task is not None:
            conn.task.cancel()
        else:  # a stream with no task of its own (embedded use): forget it now
            self.detach(conn)

    def _schedule_tick(self) -> None:
        loop = self._loop
        assert loop is not None
        # One timer for every connection's heartbeat; a ping goes out between
        # ``heartbeat`` and ``1.1 * heartbeat`` seconds of silence.
        self._tick_handle = loop.call_later(self.heartbeat / 10, self._tick)

    def _tick(self) -> None:
        if self._state not in ("running", "draining"):
            return
        loop = self._loop
        assert loop is not None
        now = loop.time()
        if self._reauthorized:
            self._reauthorized = {
                s: entry for s, entry in self._reauthorized.items() if entry[0] > now - 60
            }
        silent_since = now - self.heartbeat
        stuck_since = now - self.send_timeout
        for conn in list(self._connections):
            if conn.closing is not None:
                continue
            if conn.writer is not None:
                if conn.busy_since < stuck_since:
                    self._slow += 1
                    logger.info("stream dropped: no write completed in %.0fs", self.send_timeout)
                    self._abort(conn, "slow")
            elif conn.last_write <= silent_since:
                self._pings += 1
                self._write(conn, PING, now)
        self._schedule_tick()

    # -- connections (used by the endpoint) ----------------------------------------

    @property
    def cursor(self) -> str:
        """The cursor of the newest update (``<epoch>.0`` before the first one)."""
        return f"{self._epoch}.{self._seq}"

    @property
    def running(self) -> bool:
        """True while the hub accepts new streams (started, not draining or closed)."""
        return self._state == "running"

    @property
    def draining(self) -> bool:
        """True once shutdown began: no new streams, but notify() still works until closed."""
        return self._state == "draining"

    @property
    def state(self) -> str:
        """``"new"``, ``"running"``, ``"draining"`` or ``"closed"``."""
        return self._state

    def _position(self, last_event_id: str) -> int | None:
        """The position a cursor of this stream names; None for garbage or another epoch."""
        epoch, _, text = last_event_id.strip().rpartition(".")
        # ASCII digits only: str.isdigit() also accepts "¹" or "٣", which int() rejects
        # or misreads, and past 4,300 digits int() raises; either would break a stream
        # whose 200 is already out. At most 40 digits: the longest positions, the
        # PostgreSQL backend's (xid * 10**19 + id), have at most 39.
        if (
            epoch != self._epoch
            or not 0 < len(text) <= 40
            or not text.isascii()
            or not text.isdigit()
        ):
            return None
        return int(text)

    def attach(
        self,
        send: Send,
        principal: Principal,
        types: frozenset[str],
        last_event_id: str | None,
        task: asyncio.Task[Any] | None,
        authenticated_at: float | None = None,
    ) -> Connection:
        """Register a stream whose response has started, and write its first frames.

        Everything happens in one step on the event loop, so no update can fall
        between the replay and the live stream. ``authenticated_at`` (loop time when
        the principal was looked up) lets a ``reauthorize()`` that happened since win.
        """
        if self._state != "running":
            raise ServiceClosed(f"the UpdateService is {self._state}, not running")
        if self.unavailable(principal) is not None:
            raise ServiceClosed("permissions cannot be confirmed: the broker is away")
        self._drain()  # updates notified before this point belong in the replay
        loop = self._loop
        assert loop is not None
        revised = self._reauthorized.get(principal.subject or "")
        if revised is not None and authenticated_at is not None and revised[0] >= authenticated_at:
            # The permissions changed while this stream was being authenticated.
            principal = revised[1]
            if principal.types is not None:
                types = types & principal.types
        conn = Connection(send, principal, types, task)
        conn.told = self._marks  # the replay below covers everything until now
        now = loop.time()
        body = encode_hello(
            self.cursor,
            self.heartbeat,
            [t for t in self.types if t in types],
            retry=self.retry_ms,
            resumed=last_event_id is not None,
        )
        hold: int | None = None
        if last_event_id is not None and self._relay is not None:
            body, hold = self._relay.resume(conn, last_event_id, body, now)
        elif last_event_id is not None:
            seq = self._position(last_event_id)
            if seq is not None and seq > self._seq:
                seq = None  # from the future: not ours
            missed = None if seq is None else self._replay.since(seq)
            if missed is None:
                self._resyncs += 1
                reason = "unknown cursor" if seq is None else "cursor too old"
                body += encode_resync(self.cursor, reason)
            else:
                body += self._replay_frame(conn, missed, now)
        self._connections.add(conn)
        if self._gc is not None:
            self._gc.attached(len(self._connections))
        self._drained.clear()
        for type_ in types:
            self._by_type[type_].add(conn)
        for scope in conn.scopes:
            self._by_scope.setdefault(scope, set()).add(conn)
        self._write(conn, body, now)
        if hold is not None and self._relay is not None:
            self._relay.hold(conn, hold, now)
        self._settle(conn)
        return conn

    def detach(self, conn: Connection) -> None:
        """Forget a stream that ended; frees its state at once."""
        if conn.closing is None:
            conn.closing = "gone"
        if conn.writer is not None:
            conn.writer.cancel()
        if conn in self._connections:
            self._connections.discard(conn)
            if self._gc is not None:
                self._gc.detached(len(self._connections))
        for type_ in conn.types:
            self._by_type[type_].discard(conn)
            self._idle[type_].discard(conn)
        self._unindex_scopes(conn)
        conn.pending.clear()
        if not self._connections:
            self._drained.set()

    def _unindex_scopes(self, conn: Connection) -> None:
        for scope in conn.scopes:
            holders = self._by_scope.get(scope)
            if holders is not None:
                holders.discard(conn)
                if not holders:
                    del self._by_scope[scope]

    def reauthorize(self, subject: str, principal: Principal) -> int:
        """Give every open stream of ``subject`` a new principal, at once.

        Use it when a user's permissions change (removed from a tenant, role
        changed): from this call on their streams carry only what the new scopes
        allow. With a backend the change reaches every instance, ordered with the
        updates: no update published after this call reaches a stream of
        ``subject`` on the old scopes, anywhere (``await flush()`` waits until it is
        out). Returns the number of streams changed here. A stream whose
        authentication was under way at the time gets the new principal too.
        """
        control = None
        if self._relay is not None and self._state != "closed":
            control = self._relay.stamp(Reauthorize(subject, principal))
        changed = self._reauthorize_local(subject, principal)
        if control is not None:
            self._inbox.append((control, None, time.monotonic()))
            self._wake()
        return changed

    def _apply(self, control: Control) -> None:
        """A control message read from the shared stream (made on any instance)."""
        if isinstance(control, Reauthorize):
            self._reauthorize_local(control.subject, control.principal)
        else:
            self._close_local(control.reason, control.subject)

    def _reauthorize_local(self, subject: str, principal: Principal) -> int:
        loop = self._loop
        if loop is not None:
            self._reauthorized[subject] = (loop.time(), principal)
        changed = 0
        for conn in list(self._connections):
            if conn.principal.subject != subject or conn.closing is not None:
                continue
            self._unindex_scopes(conn)
            conn.principal = principal
            conn.scopes = principal.scopes
            for scope in conn.scopes:
                self._by_scope.setdefault(scope, set()).add(conn)
            if principal.types is not None:
                for type_ in conn.types - principal.types:
                    self._by_type[type_].discard(conn)
                    self._idle[type_].discard(conn)
                    conn.pending.pop(type_, None)
                conn.types = conn.types & principal.types
            changed += 1
        return changed

    async def flush(self) -> str:
        """Wait until everything notified, reauthorized or closed so far is published.

        With a backend, other instances can hear it once this returns: call it after
        ``reauthorize()`` / ``close_streams(subject=...)`` before answering the
        request that revoked. Returns the cursor. Raises ``PublishError`` when the
        backend does not take it (instances that cannot hear the broker end their
        authenticated streams on their own). Without a backend it returns at once.
        """
        if self._state == "new":
            raise ServiceClosed("the UpdateService is not running: start it first")
        self._drain()
        if self._relay is None:
            return self.cursor
        return await self._relay.flush()

    def unavailable(self, principal: Principal) -> str | None:
        """Why a stream for ``principal`` cannot be served right now, or None."""
        if principal.subject is not None and self._relay is not None:
            return self._relay.unconfirmed
        return None

    def statistics(self) -> Statistics:
        return Statistics(
            connections=len(self._connections),
            updates=self._updates,
            frames=self._frames,
            deliveries=self._deliveries,
            coalesced=self._coalesced,
            pings=self._pings,
            resyncs=self._resyncs,
            replays=self._replays,
            slow_disconnects=self._slow,
            replay_log=len(self._replay),
            cursor=self.cursor,
            publisher_down=None if self._relay is None else self._relay.publisher_down,
            listener_down=None if self._relay is None else self._relay.listener_down,
            updates_by_type=dict(self._updates_by_type),
            deliveries_by_type=dict(self._deliveries_by_type),
            connections_by_type={t: len(c) for t, c in self._by_type.items()},
            latency_counts=tuple(self._latency.counts),
            latency_sum=self._latency.total,
            backend=None if self._relay is None else self._relay.backend.url,
            backend_lag=None if self._relay is None else self._relay.lag,
            state=self._state,
        )

    def connections(self) -> list[ConnectionInfo]:
        """Who is connected right now, oldest stream first: for a debug or admin page.

        A snapshot: it costs one pass over the open streams, so call it on demand,
        not per request of a busy route.
        """
        found = []
        for conn in sorted(self._connections, key=lambda c: c.since):
            if conn.closing is not None:
                continue
            pending = set(conn.pending)
            pending.update(self._news(conn.told, conn.types))
            found.append(
                ConnectionInfo(
                    subject=conn.principal.subject,
                    scopes=conn.scopes,
                    types=conn.types,
                    since=datetime.fromtimestamp(conn.since, UTC),
                    frames=conn.frames,
                    pending=frozenset(pending),
                    busy=conn.writer is not None,
                )
            )
        return found

    def allowed_types(self, principal: Principal) -> frozenset[str]:
        return self._type_set if principal.types is None else self._type_set & principal.types

    def validate_types(self, names: Iterable[str]) -> None:
        unknown = [n for n in names if n not in self._type_set]
        if unknown:
            raise UnknownUpdateType(unknown, list(self.types))

    def _resync_all(self, reason: str) -> None:
        """Tell every client to refetch everything: we cannot tell what it missed."""
        loop = self._loop
        assert loop is not None
        now = loop.time()
        frame = encode_resync(self.cursor, reason)
        logger.warning("resync of %d stream(s): %s", len(self._connections), reason)
        for conn in list(self._connections):
            if conn.closing is not None:
                continue
            if conn.writer is not None:
                self._abort(conn, "resync")  # it reconnects with its cursor and hears it then
                continue
            conn.pending.clear()
            conn.told = self._marks
            self._resyncs += 1
            self._write(conn, frame, now)
            self._settle(conn)

    def _replay_frame(self, conn: Connection, missed: Iterable[Update], now: float) -> bytes:
        for update in missed:
            if conn.sees(update.type, update.audience):
                conn.add(update.type, update.key, update.cursor, self.max_keys)
        if not conn.pending:
            return b""
        self._replays += 1
        pending, cursor = conn.take()
        self._frames += 1
        conn.frames += 1
        self._deliveries += len(pending)
        for type_ in pending:
            self._deliveries_by_type[type_] += 1
        conn.last_invalidate = now
        return encode_invalidate(cursor, pending)


def _warn_if_never_started(type_: str) -> bool:
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


class _Frame:
    """One encoded invalidate frame of a flush, and the streams it went to."""

    __slots__ = ("body", "oldest", "types", "untargeted", "uses")

    def __init__(self, body: bytes, types: tuple[str, ...], oldest: float | None) -> None:
        self.body = body
        self.types = types
        #: time.monotonic() of the oldest update for everyone it carries.
        self.oldest = oldest
        self.uses = 0
        #: Streams it went to that had no update of their own in it: they all waited
        #: as long as ``oldest``, so one weighted observation covers them.
        self.untargeted = 0
