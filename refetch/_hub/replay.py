"""The bounded replay log that lets a reconnecting client catch up."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator

from .._update import Update


class ReplayLog:
    """The newest updates, bounded in count (``size``) and age (``max_age`` seconds).

    Entries are ``(seq, monotonic time, update)`` with strictly increasing ``seq``.
    """

    __slots__ = ("_clock", "_entries", "_first_kept", "max_age", "size")

    def __init__(
        self, size: int, max_age: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.size = size
        self.max_age = max_age
        self._clock = clock
        self._entries: deque[tuple[int, float, Update]] = deque(maxlen=size if size else 0)
        # The seq of the oldest update that was ever dropped + 1; resuming from
        # a cursor older than ``_first_kept - 1`` may miss updates.
        self._first_kept = 1

    def append(self, seq: int, update: Update) -> None:
        if self.size == 0:
            self._first_kept = seq + 1
            return
        if len(self._entries) == self.size:
            self._first_kept = self._entries[0][0] + 1
        self._entries.append((seq, self._clock(), update))
        self._trim()

    def _trim(self) -> None:
        horizon = self._clock() - self.max_age
        entries = self._entries
        while entries and entries[0][1] < horizon:
            self._first_kept = entries.popleft()[0] + 1

    @property
    def floor(self) -> int:
        """The oldest seq ``since()`` can answer for: every update after it is kept."""
        self._trim()
        return self._first_kept - 1

    def reset(self, floor: int) -> None:
        """Forget every update; from now on the log covers what comes after ``floor``."""
        self._entries.clear()
        self._first_kept = floor + 1

    def since(self, seq: int) -> Iterator[Update] | None:
        """Updates after ``seq``, or ``None`` when the log cannot tell what came after it."""
        self._trim()
        if seq < self._first_kept - 1:
            return None
        # Walk back from the newest entry: a reconnecting client usually missed
        # little, so this costs what it returns, not the size of the log.
        newer: list[Update] = []
        for s, _, update in reversed(self._entries):
            if s <= seq:
                break
            newer.append(update)
        newer.reverse()
        return iter(newer)

    def __len__(self) -> int:
        return len(self._entries)
