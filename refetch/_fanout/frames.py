"""The shared frames of one write pass: a fan-out encodes each distinct frame once.

Connections that heard up to the same broadcast serial, with the same types and the same
updates of their own, get the very same ``bytes``. Its id is the newest cursor: everything
merged so far is in it. The pass also counts deliveries per type and feeds the latency
histogram once per distinct frame, not per stream.
"""

from __future__ import annotations

import time

from .._changes import Changes, merge_changes
from .._sse import encode_invalidate
from .broadcasts import Broadcasts
from .latency import LatencyHistogram


class Frame:
    """One encoded invalidate frame, and the streams it went to."""

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


class FramePass:
    __slots__ = ("_broadcasts", "_cursor", "_frames", "_latency", "_max_keys")

    def __init__(
        self, broadcasts: Broadcasts, cursor: str, max_keys: int, latency: LatencyHistogram
    ) -> None:
        self._broadcasts = broadcasts
        self._cursor = cursor
        self._max_keys = max_keys
        self._latency = latency
        self._frames: dict[object, Frame] = {}

    def frame(
        self, heard: int, types: frozenset[str], targeted: Changes, pending_since: float
    ) -> Frame:
        """The frame for a stream that heard up to ``heard`` and has ``targeted`` of its own."""
        signature: object = (heard, types)
        if targeted:
            signature = (
                heard,
                types,
                tuple((t, None if k is None else frozenset(k)) for t, k in targeted.items()),
            )
        frame = self._frames.get(signature)
        if frame is None:
            changes = self._broadcasts.since(heard, types)
            oldest = self._broadcasts.oldest(heard, changes)
            merge_changes(changes, targeted, self._max_keys)
            frame = self._frames[signature] = Frame(
                encode_invalidate(self._cursor, changes), tuple(changes), oldest
            )
        frame.uses += 1
        if targeted:
            waited = pending_since if frame.oldest is None else min(pending_since, frame.oldest)
            self._latency.observe(time.monotonic() - waited)
        else:
            frame.untargeted += 1
        return frame

    def account(self, deliveries_by_type: dict[str, int]) -> None:
        """After the pass: deliveries per type, and one latency observation per frame."""
        if not self._frames:
            return
        written = time.monotonic()
        for frame in self._frames.values():
            for type_ in frame.types:
                deliveries_by_type[type_] += frame.uses
            if frame.oldest is not None and frame.untargeted:
                self._latency.observe(written - frame.oldest, frame.untargeted)
