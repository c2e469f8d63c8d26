"""The fan-out's port: what a sequencer may do to it (``Sink``), and how a stream starts.

A sequencer (``refetch._hub``) numbers updates and hands them down through ``Sink``; it
answers ``resume(cursor)`` with a start value (``Replay``, ``Resync``, ``CatchUp``) that
the fan-out writes. Both live here, below the hub, so the fan-out never imports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .._control import Control
from .._update import Update


@dataclass(frozen=True, slots=True)
class Replay:
    """A resuming client missed these updates (maybe none): one merged frame."""

    missed: list[Update]


@dataclass(frozen=True, slots=True)
class Resync:
    """A resuming client cannot be told what it missed."""

    reason: str


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What a resuming client missed is being fetched; ``finish()`` says it once done.

    While it runs the connection is busy: live updates collect in its pending set, so
    nothing overtakes the replay. ``finish`` is called on the loop right when the fetch
    is done and returns a ``Replay`` or ``Resync`` of everything up to that moment.
    """

    fetch: asyncio.Task[Callable[[], Replay | Resync]]


#: How a stream starts: fresh (None), or resuming from a cursor.
Start = Replay | Resync | CatchUp | None


class Sink(Protocol):
    """What a sequencer may do to the fan-out."""

    def deliver(self, update: Update, at: float | None = None) -> int: ...
    def resync_all(self, reason: str, cursor: str) -> None: ...
    def apply(self, control: Control) -> None: ...
    def close_unconfirmed(self, reason: str) -> int: ...
