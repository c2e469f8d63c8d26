"""Sequencers number updates and own the replay; the fan-out only hears from them.

Two kinds: ``LocalSequencer`` (one process: a counter and a ``ReplayLog``) and
``BrokerSequencer`` in ``broker.py`` (many instances: the backend's positions). Both
talk to the fan-out through ``Sink`` and never see a connection.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from typing import Protocol

from .._control import Control
from .._cursor import Cursor
from .._fanout.sink import Replay, Resync, Sink, Start
from .._log import update_delivered
from .._update import Update
from .replay import ReplayLog
from .statistics import SequencerStatistics

update_logger = logging.getLogger("refetch.updates")

#: What ``UpdateService`` queues: an update or a control message, who awaits it, and
#: when it was notified (``time.monotonic()``, for the latency histogram).
Item = tuple[Update | Control, "asyncio.Future[str] | None", float]


class Sequencer(Protocol):
    @property
    def cursor(self) -> str: ...
    @property
    def unconfirmed(self) -> str | None: ...
    def statistics(self) -> SequencerStatistics: ...
    async def start(self, loop: asyncio.AbstractEventLoop, sink: Sink) -> None: ...
    async def stop(self, grace: float) -> None: ...
    def submit(self, items: Sequence[Item]) -> None: ...
    def share(self, control: Control) -> Control | None: ...
    def resume(self, last_event_id: str) -> Start: ...
    async def flush(self, timeout: float | None = None) -> str: ...  # noqa: ASYNC109


class Numbering:
    """An epoch, the newest position in it, and the replay log of what came before."""

    def __init__(self, replay_size: int, replay_age: float) -> None:
        # A random epoch tells this run's cursors apart from any other run's.
        self.epoch = secrets.token_hex(4)
        self.position = 0
        self.log = ReplayLog(replay_size, replay_age)

    @property
    def cursor(self) -> str:
        return str(Cursor(self.epoch, self.position))

    def reset(self, epoch: str, position: int) -> None:
        self.epoch, self.position = epoch, position
        self.log.reset(position)

    def position_of(self, last_event_id: str) -> int | None:
        """The position a client's cursor names in this numbering, or None if foreign."""
        cursor = Cursor.parse(last_event_id)
        if cursor is None or cursor.epoch != self.epoch:
            return None
        return cursor.position

    def numbered(self, update: Update, position: int) -> Update:
        return Update(update.type, update.key, update.audience, str(Cursor(self.epoch, position)))


def log_update(update: Update, reached: int) -> None:
    if update_logger.isEnabledFor(logging.DEBUG):
        update_delivered(update, reached)


class LocalSequencer:
    """One process: the hub numbers updates itself (the fast path)."""

    unconfirmed = None

    #: The fan-out, from start() on (it is built on the loop the hub starts on).
    _sink: Sink

    def __init__(self, replay_size: int, replay_age: float) -> None:
        self._numbering = Numbering(replay_size, replay_age)

    @property
    def cursor(self) -> str:
        return self._numbering.cursor

    def statistics(self) -> SequencerStatistics:
        return SequencerStatistics(cursor=self.cursor, replay_log=len(self._numbering.log))

    async def start(self, loop: asyncio.AbstractEventLoop, sink: Sink) -> None:
        self._sink = sink

    async def stop(self, grace: float) -> None:
        return None

    def submit(self, items: Sequence[Item]) -> None:
        numbering, sink = self._numbering, self._sink
        for update, future, at in items:
            if not isinstance(update, Update):
                continue  # there is no other instance to tell: see share()
            numbering.position += 1
            update = numbering.numbered(update, numbering.position)
            numbering.log.append(numbering.position, update)
            log_update(update, sink.deliver(update, at))
            if future is not None and not future.done():
                future.set_result(update.cursor)

    def share(self, control: Control) -> Control | None:
        return None  # one process: the change took effect where it was made

    def resume(self, last_event_id: str) -> Start:
        numbering = self._numbering
        position = numbering.position_of(last_event_id)
        if position is None or position > numbering.position:
            return Resync("unknown cursor")  # garbage, another run's, or from the future
        missed = numbering.log.since(position)
        if missed is None:
            return Resync("cursor too old")
        return Replay(list(missed))

    async def flush(self, timeout: float | None = None) -> str:  # noqa: ASYNC109
        return self.cursor
