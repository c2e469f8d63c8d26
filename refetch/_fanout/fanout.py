"""The fan-out: which connection hears what, when it is written, and the writing itself.

It keeps the connections indexed by type and by scope, the idle set (the only ones an
update for everyone has to touch), the coalescing timers, the shared frame cache, the
heartbeat round, and attach/detach. It knows nothing of brokers: a sequencer hands it
numbered updates through the ``Sink`` methods (``deliver``, ``resync_all``, ``apply``,
``close_unconfirmed``) and writes what they made due once per loop turn, by itself.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime

from .._auth import Principal
from .._control import Control, Reauthorize
from .._sse import PING, encode_invalidate, encode_resync
from .._update import Update
from .broadcasts import Broadcasts
from .connection import Connection, ConnectionInfo, State
from .counts import FanOutStatistics
from .demand import LocalDemand
from .frames import FramePass
from .latency import LatencyHistogram
from .registry import Registry
from .sink import CatchUp, Replay, Resync, Start

logger = logging.getLogger("refetch")


class FanOut:
    """Built when the hub starts, on the loop it runs on (every timer and clock is the loop's)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        types: tuple[str, ...],
        *,
        min_interval: float,
        heartbeat: float,
        max_keys: int,
        send_timeout: float,
        demand: LocalDemand | None = None,
    ) -> None:
        self.types = types
        self.min_interval = min_interval
        self.heartbeat = heartbeat
        self.max_keys = max_keys
        self.send_timeout = send_timeout
        #: The cursor of the newest update delivered: every frame's id.
        self.cursor = ""
        self._loop = loop
        self._streams = Registry(types, demand)
        self._broadcasts = Broadcasts(types, max_keys)
        self._due: list[Connection] = []
        self._flush_soon = False
        self._timers: dict[float, tuple[asyncio.TimerHandle, list[Connection]]] = {}
        self._heartbeat: asyncio.TimerHandle | None = None
        # subject -> (loop time, principal) of recent reauthorizations, for streams
        # authenticated just before one of them; forgotten after a minute.
        self._reauthorized: dict[str, tuple[float, Principal]] = {}
        self.updates = 0
        self.frames = 0
        self.deliveries = 0
        self.coalesced = 0
        self.pings = 0
        self.resyncs = 0
        self.replays = 0
        self.slow = 0
        self.latency = LatencyHistogram()
        self.updates_by_type: dict[str, int] = dict.fromkeys(types, 0)
        self.deliveries_by_type: dict[str, int] = dict.fromkeys(types, 0)

    # -- lifecycle -----------------------------------------------------------------

    def start(self, cursor: str) -> None:
        self.cursor = cursor
        self._schedule_heartbeat()

    def stop(self) -> None:
        """Stop the timers; the connections are ended by ``close()`` first."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for timer, _ in self._timers.values():
            timer.cancel()
        self._timers.clear()

    @property
    def connections(self) -> int:
        return len(self._streams)

    def statistics(self) -> FanOutStatistics:
        latency_counts, latency_sum = self.latency.snapshot()
        return FanOutStatistics(
            connections=len(self._streams),
            updates=self.updates,
            frames=self.frames,
            deliveries=self.deliveries,
            coalesced=self.coalesced,
            pings=self.pings,
            resyncs=self.resyncs,
            replays=self.replays,
            slow_disconnects=self.slow,
            updates_by_type=dict(self.updates_by_type),
            deliveries_by_type=dict(self.deliveries_by_type),
            connections_by_type=self._streams.counts_by_type(),
            latency_counts=latency_counts,
            latency_sum=latency_sum,
        )

    def describe(self) -> list[ConnectionInfo]:
        """The open streams, oldest first (one pass: for a debug page, on demand)."""
        found = []
        for conn in sorted(self._streams, key=lambda c: c.since):
            pending = set(conn.pending)
            pending.update(self._broadcasts.since(conn.heard, conn.types))
            found.append(
                ConnectionInfo(
                    subject=conn.principal.subject,
                    session=conn.principal.session,
                    scopes=conn.scopes,
                    types=conn.types,
                    since=datetime.fromtimestamp(conn.since, UTC),
                    frames=conn.frames,
                    pending=frozenset(pending),
                    busy=conn.state in State.BUSY,
                )
            )
        return found

    # -- the sink: what sequencers call ----------------------------------------------

    def deliver(self, update: Update, at: float | None = None) -> int:
        """Mark every connection that may see ``update``; returns how many it reached.

        ``at`` is when it was notified (``time.monotonic()``; None: now), for the
        latency histogram.
        """
        type_, key, cursor, audience = update.type, update.key, update.cursor, update.audience
        if at is None:
            at = time.monotonic()
        self.cursor = cursor
        self.updates += 1
        self.updates_by_type[type_] += 1
        self._broadcasts.tick()
        if audience is None:
            # For everyone: O(1) plus the subscribers that were idle. Under a storm
            # nearly all of them already wait for their next write, and merge this
            # update in then (Broadcasts.since), so a notify does not walk every connection.
            self._broadcasts.record(type_, key, at)
            subscribers = self._streams.subscribers(type_)
            idle = self._streams.idle(type_)
            self.coalesced += subscribers - len(idle)
            for conn in list(idle):
                self._make_due(conn)
            return subscribers
        candidates = self._streams.audience(type_, audience)
        reached = 0
        max_keys = self.max_keys
        for conn in candidates:
            reached += 1
            if not conn.pending:
                conn.pending_since = at
            if conn.add(type_, key, cursor, max_keys):
                self.coalesced += 1
            if conn.state == State.IDLE:
                self._make_due(conn)
        return reached

    def _flush(self, now: float) -> None:
        """Write to every connection that is due, unless coalescing defers it."""
        if not self._due:
            return
        due, self._due = self._due, []
        frames = FramePass(self._broadcasts, self.cursor, self.max_keys, self.latency)
        interval = self.min_interval
        for conn in due:
            if conn.state != State.DUE:
                continue  # ended, or busy since it was queued (its write's end decides)
            at = conn.last_invalidate + interval
            if at > now:
                self._defer(conn, at)
            elif self._has_news(conn):
                self._write_pending(conn, now, frames)
            else:
                self._make_idle(conn)
        frames.account(self.deliveries_by_type)

    def resync_all(self, reason: str, cursor: str) -> None:
        """Tell every client to refetch everything: nobody can tell what it missed."""
        now = self._loop.time()
        self.cursor = cursor
        frame = encode_resync(cursor, reason)
        logger.warning("resync of %d stream(s): %s", len(self._streams), reason)
        for conn in self._streams:
            if conn.state == State.CLOSED:
                continue
            if conn.state in State.BUSY:
                self._abort(conn, "resync")  # it reconnects with its cursor and hears it then
                continue
            conn.pending.clear()
            conn.heard = self._broadcasts.serial
            self.resyncs += 1
            self._write(conn, frame, now)
            self._next(conn)

    def apply(self, control: Control) -> None:
        """A control message, where it stands among the updates."""
        if isinstance(control, Reauthorize):
            self.reauthorize(control.subject, control.principal)
        else:
            self.close(control.reason, control.subject, control.session)

    def close_unconfirmed(self, reason: str) -> int:
        """End every stream with a subject: its permissions can no longer be confirmed."""
        ended = 0
        for conn in self._streams:
            if conn.principal.subject is not None and conn.state != State.CLOSED:
                self._abort(conn, reason)
                ended += 1
        if ended:
            logger.warning("ended %d authenticated stream(s): %s", ended, reason)
        return ended

    # -- who hears what ----------------------------------------------------------------

    def close(self, reason: str, subject: str | None = None, session: str | None = None) -> int:
        """End open streams: all, those of ``subject``, of ``session``, or of both.

        Returns how many. A session's streams are found in their own index: a sign-out
        costs the streams of that session, not a walk over every stream.
        """
        ended = 0
        streams = self._streams if session is None else self._streams.of_session(session)
        for conn in streams:
            if subject is None or conn.principal.subject == subject:
                self._abort(conn, reason)
                ended += 1
        return ended

    def close_all(self, reason: str, farewells: Callable[[int], Iterable[bytes]]) -> int:
        """End every open stream, each with its own last frame: ``farewells(count)`` of them.

        The frame is written by the stream's owner as the response's last body, after
        any write still on its way, so middleware that passes ``send()`` through a
        channel gets it in order too.
        """
        streams = list(self._streams)
        for conn, farewell in zip(streams, farewells(len(streams)), strict=True):
            conn.farewell = farewell
            self._abort(conn, reason)
        return len(streams)

    def reauthorize(self, subject: str, principal: Principal) -> int:
        self._reauthorized[subject] = (self._loop.time(), principal)
        changed = 0
        for conn in self._streams:
            if conn.principal.subject != subject or conn.state == State.CLOSED:
                continue
            self._streams.rescope(conn, _in_session(principal, conn.principal.session))
            changed += 1
        return changed

    def revised(self, principal: Principal, authenticated_at: float | None) -> Principal:
        """The principal a stream gets: a reauthorization since its authentication wins."""
        revised = self._reauthorized.get(principal.subject or "")
        if revised is not None and authenticated_at is not None and revised[0] >= authenticated_at:
            return _in_session(revised[1], principal.session)
        return principal

    # -- connections -----------------------------------------------------------------------

    def attach(self, conn: Connection, hello: bytes, start: Start) -> None:
        """Register a stream whose response has started and write its first frames.

        One step on the event loop: no update can fall between the replay and the
        live stream.
        """
        now = self._loop.time()
        conn.heard = self._broadcasts.serial  # the replay below covers everything until now
        body = hello
        if isinstance(start, Resync):
            self.resyncs += 1
            body += encode_resync(self.cursor, start.reason)
        elif isinstance(start, Replay):
            body += self._replay_frame(conn, start.missed, now)
        self._streams.add(conn)
        self._write(conn, body, now)
        if isinstance(start, CatchUp):
            self._catch_up(conn, start, now)
        self._next(conn)

    def detach(self, conn: Connection, reason: str = "gone") -> None:
        """Forget a stream (it ended, or is ended now for ``reason``); frees its state at once."""
        stuck = conn.state == State.WRITING  # its socket is full: not even the end gets out
        conn.end(reason)
        if conn.inflight is not None:
            conn.inflight.cancel()
            conn.inflight = None
            if stuck:
                conn.drop()
        self._streams.remove(conn)
        conn.pending.clear()

    def _catch_up(self, conn: Connection, start: CatchUp, now: float) -> None:
        if conn.state == State.WRITING:
            start.fetch.cancel()
            self._abort(conn, "resync")  # hello is still on its way: let it retry
            return
        conn.state = State.REPLAYING
        conn.inflight = start.fetch
        conn.busy_since = now
        start.fetch.add_done_callback(lambda task: self._caught_up(conn, task))

    def _caught_up(
        self, conn: Connection, task: asyncio.Task[Callable[[], Replay | Resync]]
    ) -> None:
        conn.inflight = None
        if task.cancelled() or conn.state == State.CLOSED:
            return
        now = self._loop.time()
        conn.state = State.IDLE
        # Updates that arrived meanwhile are in the replay too: start over from it.
        conn.pending.clear()
        conn.heard = self._broadcasts.serial
        outcome = task.result()()
        if isinstance(outcome, Resync):
            self.resyncs += 1
            self._write(conn, encode_resync(self.cursor, outcome.reason), now)
        else:
            body = self._replay_frame(conn, outcome.missed, now)
            if body:
                self._write(conn, body, now)
        self._next(conn)

    # -- writing -------------------------------------------------------------------------

    def _make_due(self, conn: Connection) -> None:
        self._streams.wake(conn)
        conn.state = State.DUE
        self._due.append(conn)
        # The one flush rule: the first connection made due in a loop turn schedules one
        # flush right after it, so whatever else that turn delivers (a drained batch, a
        # listener's read, the outbox's local delivery) goes out in the same pass and
        # no caller has to remember to flush.
        if not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self._flush_now)

    def _make_idle(self, conn: Connection) -> None:
        conn.state = State.IDLE
        self._streams.rest(conn)

    def _has_news(self, conn: Connection) -> bool:
        return bool(conn.pending) or self._broadcasts.newer(conn.heard, conn.types)

    def _next(self, conn: Connection) -> None:
        """After a write: queue the next one if there is news, else wait idle."""
        if conn.state != State.IDLE:
            return
        if self._has_news(conn):
            self._make_due(conn)
        else:
            self._make_idle(conn)

    def _flush_now(self) -> None:
        self._flush_soon = False
        self._flush(self._loop.time())

    def _defer(self, conn: Connection, at: float) -> None:
        # Deadlines are rounded up to a tenth of min_interval, so a burst that marks
        # thousands of connections arms a handful of timers, not one per connection.
        grain = self.min_interval / 10
        at = math.ceil(at / grain) * grain
        entry = self._timers.get(at)
        if entry is None:
            entry = self._timers[at] = (self._loop.call_at(at, self._on_timer, at), [])
        entry[1].append(conn)

    def _on_timer(self, at: float) -> None:
        _, waiting = self._timers.pop(at)
        self._due.extend(c for c in waiting if c.state == State.DUE)
        self._flush(max(self._loop.time(), at))

    def _write_pending(self, conn: Connection, now: float, frames: FramePass) -> None:
        heard, conn.heard = conn.heard, self._broadcasts.serial
        targeted, _ = conn.take()
        frame = frames.frame(heard, conn.types, targeted, conn.pending_since)
        conn.last_invalidate = now
        conn.state = State.IDLE
        conn.frames += 1
        self.frames += 1
        self.deliveries += len(frame.types)
        self._write(conn, frame.body, now)
        if conn.state == State.IDLE:
            self._make_idle(conn)

    def _write(self, conn: Connection, frame: bytes, now: float) -> None:
        try:
            writer = conn.write(frame, now)
        except Exception as exc:  # the server refused the write: the client is gone
            logger.debug("write to a stream failed: %r", exc)
            self._abort(conn, "send failed")
            return
        if writer is not None:
            conn.state = State.WRITING
            conn.inflight = writer
            writer.add_done_callback(lambda task: self._written(conn, task))

    def _written(self, conn: Connection, task: asyncio.Task[None]) -> None:
        conn.inflight = None
        if task.cancelled() or conn.state == State.CLOSED:
            return
        if task.exception() is not None:
            self._abort(conn, "send failed")
            return
        conn.state = State.IDLE
        self._next(conn)

    def _abort(self, conn: Connection, reason: str) -> None:
        """End a stream: it hears nothing more; its owner finishes it and detaches it."""
        self.detach(conn, reason)

    def _replay_frame(self, conn: Connection, missed: Iterable[Update], now: float) -> bytes:
        for update in missed:
            if conn.sees(update.type, update.audience):
                conn.add(update.type, update.key, update.cursor, self.max_keys)
        if not conn.pending:
            return b""
        self.replays += 1
        pending, cursor = conn.take()
        self.frames += 1
        conn.frames += 1
        self.deliveries += len(pending)
        for type_ in pending:
            self.deliveries_by_type[type_] += 1
        conn.last_invalidate = now
        return encode_invalidate(cursor, pending)

    # -- heartbeats ------------------------------------------------------------------------

    def _schedule_heartbeat(self) -> None:
        # One timer for every connection's heartbeat; a ping goes out between
        # ``heartbeat`` and ``1.1 * heartbeat`` seconds of silence.
        self._heartbeat = self._loop.call_later(self.heartbeat / 10, self._heartbeat_round)

    def _heartbeat_round(self) -> None:
        now = self._loop.time()
        if self._reauthorized:
            self._reauthorized = {
                s: entry for s, entry in self._reauthorized.items() if entry[0] > now - 60
            }
        silent_since = now - self.heartbeat
        stuck_since = now - self.send_timeout
        for conn in self._streams:
            if conn.state == State.CLOSED:
                continue
            if conn.state in State.BUSY:
                if conn.busy_since < stuck_since:
                    self.slow += 1
                    logger.info("stream dropped: no write completed in %.0fs", self.send_timeout)
                    self._abort(conn, "slow")
            elif conn.last_write <= silent_since:
                self.pings += 1
                # A due connection whose ping blocks is busy until it is written; its
                # queued write is then skipped and _written queues it again.
                self._write(conn, PING, now)
        self._schedule_heartbeat()


def _in_session(principal: Principal, session: str | None) -> Principal:
    """``principal`` for a stream of ``session``: a reauthorization keeps each stream's own."""
    return principal if principal.session == session else replace(principal, session=session)
