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
    """Items filed under the tick they are due at; ``due(now)`` takes the ones that came.

    An item is filed at most once: filing it again moves it.
    """

    __slots__ = ("_next", "_ticks", "_where", "grain", "heartbeat")

    def __init__(self, heartbeat: float) -> None:
        self.heartbeat = heartbeat
        self.grain = heartbeat / TICKS
        self._ticks: dict[int, dict[T, None]] = {}
        self._where: dict[T, int] = {}
        self._next: int | None = None  # the earliest tick not yet taken

    def add(self, item: T, now: float) -> None:
        """A new stream: first looked at a random point between half and one interval."""
        self.at(item, now + self.heartbeat * random.uniform(0.5, 1.0))

    def at(self, item: T, when: float) -> None:
        """File ``item`` at ``when`` (moving it if it was filed already)."""
        tick = math.ceil(when / self.grain)
        if self._next is not None and tick < self._next:
            tick = self._next
        old = self._where.get(item)
        if old == tick:
            return
        if old is not None:
            self._remove(item, old)
        self._where[item] = tick
        bucket = self._ticks.get(tick)
        if bucket is None:
            self._ticks[tick] = {item: None}
        else:
            bucket[item] = None

    def sooner(self, item: T, when: float) -> None:
        """File ``item`` at ``when`` unless it is filed earlier already."""
        old = self._where.get(item)
        if old is None or math.ceil(when / self.grain) < old:
            self.at(item, when)

    def discard(self, item: T) -> None:
        tick = self._where.get(item)
        if tick is not None:
            self._remove(item, tick)

    def _remove(self, item: T, tick: int) -> None:
        del self._where[item]
        bucket = self._ticks[tick]
        del bucket[item]
        if not bucket:
            del self._ticks[tick]

    def due(self, now: float) -> list[T]:
        """Everything filed at a tick up to ``now``, taken out of the schedule."""
        last = math.floor(now / self.grain)
        first = self._next if self._next is not None else last
        self._next = last + 1
        if not self._ticks:
            return []
        if last - first > len(self._ticks):  # a long sleep: look only at filled ticks
            ticks = sorted(t for t in self._ticks if t <= last)
        else:
            ticks = [t for t in range(min(first, min(self._ticks)), last + 1) if t in self._ticks]
        taken: list[T] = []
        for tick in ticks:
            bucket = self._ticks.pop(tick)
            for item in bucket:
                del self._where[item]
            taken.extend(bucket)
        return taken

    def __len__(self) -> int:
        return len(self._where)

    def clear(self) -> None:
        self._ticks.clear()
        self._where.clear()
