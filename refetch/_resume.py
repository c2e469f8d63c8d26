"""How a stream starts: fresh, or resuming from a client's cursor.

A sequencer answers ``resume(cursor)`` with one of these; the fan-out writes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from ._update import Update


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
