"""Updates for everyone, kept once per type instead of once per connection.

An update without an audience reaches every subscriber of its type. Copying it into
thousands of pending sets would make a storm cost O(connections) per notify; instead it
is recorded here under a serial number, and a connection merges in what came after the
serial it ``heard`` when it writes (``since``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from .._changes import Changes, add_change


class Broadcasts:
    """Per type: the serial of the newest update, of the newest whole-type one, the newest keys."""

    __slots__ = ("_keys", "_last", "_times", "_whole", "max_keys", "serial")

    def __init__(self, types: Iterable[str], max_keys: int) -> None:
        self.max_keys = max_keys
        #: Counts every update merged anywhere (for everyone or not), so ``heard`` also
        #: dates the frames a connection got for its audience updates.
        self.serial = 0
        self._last = dict.fromkeys(types, 0)
        self._whole = dict.fromkeys(types, 0)
        # max_keys + 1 keys are enough to tell "these keys" from "too many: the whole type".
        self._keys: dict[str, deque[tuple[int, str]]] = {
            t: deque(maxlen=max_keys + 1) for t in self._last
        }
        # (serial, time.monotonic() of its notify) of the newest ones, per type: how
        # long the oldest news of a frame waited, for the latency histogram.
        self._times: dict[str, deque[tuple[int, float]]] = {
            t: deque(maxlen=max_keys + 1) for t in self._last
        }

    def tick(self) -> int:
        """Number one update (any audience); returns its serial."""
        self.serial += 1
        return self.serial

    def record(self, type_: str, key: str | None, at: float) -> None:
        """The update just numbered by ``tick()`` was for everyone (notified at ``at``)."""
        serial = self.serial
        self._last[type_] = serial
        if key is None:
            self._whole[type_] = serial
        else:
            self._keys[type_].append((serial, key))
        self._times[type_].append((serial, at))

    def oldest(self, heard: int, types: Iterable[str]) -> float | None:
        """When the oldest update for everyone of ``types`` after serial ``heard`` was notified.

        Past the kept times the oldest kept one stands in (an underestimate).
        """
        oldest: float | None = None
        for type_ in types:
            times = self._times[type_]
            if not times or times[-1][0] <= heard:
                continue
            at = times[-1][1]
            for serial, when in reversed(times):
                if serial <= heard:
                    break
                at = when
            if oldest is None or at < oldest:
                oldest = at
        return oldest

    def newer(self, heard: int, types: Iterable[str]) -> bool:
        last = self._last
        return any(last[t] > heard for t in types)

    def since(self, heard: int, types: frozenset[str]) -> Changes:
        """What was sent to everyone, per type of ``types``, after serial ``heard``."""
        changes: Changes = {}
        for type_, last in self._last.items():
            if type_ not in types or last <= heard:
                continue
            if self._whole[type_] > heard:
                changes[type_] = None
                continue
            log = self._keys[type_]
            if len(log) == log.maxlen and log[0][0] > heard:
                changes[type_] = None  # more than max_keys keys since: the whole type
                continue
            for serial, key in reversed(log):
                if serial <= heard:
                    break
                add_change(changes, type_, key, self.max_keys)
        return changes
