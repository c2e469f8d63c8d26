"""When each stream's next ping is due, without walking every stream on every tick.

A ping goes out after ``heartbeat`` seconds of silence, and clients treat twice that as
a dead connection. Walking all connections every tenth of a heartbeat to find the silent
ones costs ten visits per stream per interval, and writes every ping of a cohort that
connected together (a deploy, a reconnect storm) in one burst: at 10,000 streams that is
a stall of the event loop of more than 100 ms every interval, in which no update goes out.

``Schedule`` files each stream under the tick its ping is due at (ticks of a thirtieth of
a heartbeat) and hands back only those whose tick came: about one visit per stream per
interval, and a ping at between 1 and 1 + 1/30 heartbeats of silence. A stream's first
visit is at a random point of its first interval (never later than one heartbeat after
it opened), so a cohort's pings spread over half an interval and stay spread.
"""

from __future__ import annotations

import math
import random
from typing import Generic, TypeVar

T = TypeVar("T")

#: Ticks per heartbeat interval: the ping's lateness bound, as a fraction of it.
TICKS = 30


class Schedule(Generic[T]):
    """Items filed under the tick they are due at; ``due(now)`` takes the ones that came."""

    __slots__ = ("_next", "_ticks", "grain", "heartbeat")

    def __init__(self, heartbeat: float) -> None:
        self.heartbeat = heartbeat
        self.grain = heartbeat / TICKS
        self._ticks: dict[int, list[T]] = {}
        self._next: int | None = None  # the earliest tick not yet taken

    def add(self, item: T, now: float) -> None:
        """A new stream: first looked at a random point between half and one interval."""
        self.at(item, now + self.heartbeat * random.uniform(0.5, 1.0))

    def at(self, item: T, when: float) -> None:
        tick = math.ceil(when / self.grain)
        if self._next is not None and tick < self._next:
            tick = self._next
        bucket = self._ticks.get(tick)
        if bucket is None:
            self._ticks[tick] = [item]
        else:
            bucket.append(item)

    def due(self, now: float) -> list[T]:
        """Everything filed at a tick up to ``now``, taken out of the schedule."""
        last = math.floor(now / self.grain)
        if not self._ticks:
            self._next = last + 1
            return []
        first = self._next if self._next is not None else min(self._ticks)
        taken: list[T] = []
        if last - first > len(self._ticks):  # a long sleep: look only at filled ticks
            for tick in sorted(t for t in self._ticks if t <= last):
                taken.extend(self._ticks.pop(tick))
        else:
            for tick in range(first, last + 1):
                bucket = self._ticks.pop(tick, None)
                if bucket is not None:
                    taken.extend(bucket)
        self._next = last + 1
        return taken

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._ticks.values())

    def clear(self) -> None:
        self._ticks.clear()
