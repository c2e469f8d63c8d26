"""The hub's GC policy: long-lived stream state kept out of the cyclic collector's way.

Every open stream is a few dozen long-lived objects (the server's request cycle, the
endpoint's task and frames, the framework's scope and closures, the hub's connection),
and a full collection of CPython's cyclic GC walks all of them: at 10,000 streams in a
FastAPI app that is a pause of a few hundred milliseconds, in the middle of whatever
the event loop was doing. ``gc.freeze()`` moves everything alive into a permanent
generation that collections skip; it costs nothing (a list splice), but whatever is
frozen is never collected until ``gc.unfreeze()``, so cyclic garbage among frozen
objects (a stream's, or the app's) waits for that.

So: once at start, a freeze (the app's imported modules and set-up are most of a young
process's objects). Then, when the streams attached since the last freeze reach a tenth
of those open (and at least ``floor``), collect the young generations (so fresh garbage
is not frozen) and freeze: under churn too, so the streams that replaced frozen ones do
not pile up in the old generation. A stream that ends is freed by reference counting,
frozen or not (measured: 12,000 replacements at 1,000 streams leave RSS flat with no full
collection at all), so churn needs no unfreezing. Only when the open streams fall to half
of their peak (a mass disconnect, a deploy) does the policy recycle: unfreeze, one full
collection, freeze again, so that cyclic garbage frozen along with them (an app's, say)
is collected after all. That pause is a full collection's (it walks the whole heap: up to
a second at 10,000 streams in a FastAPI app), taken when at most half the streams are
left. The policy is process-wide (``gc.freeze`` is): several hubs in one process each
freeze for their own streams, which is harmless.
"""

from __future__ import annotations

import gc
import logging
import time

logger = logging.getLogger("refetch")


class FreezePolicy:
    """Freeze as streams come, recycle as they go; see the module docstring."""

    __slots__ = ("floor", "freezes", "grow", "longest_recycle", "peak", "since")

    def __init__(self, *, grow: float = 0.1, floor: int = 100) -> None:
        self.grow = grow
        self.floor = floor
        self.since = 0  # streams attached since the last freeze
        self.peak = 0  # the most streams open since the last recycle (0: none frozen yet)
        self.freezes = 0
        self.longest_recycle = 0.0

    def start(self) -> None:
        """The app is imported and set up: freeze all of that once, before any stream.

        A web app's modules (FastAPI, pydantic, an ORM) are a few hundred thousand
        tracked objects; without this, each full collection of the first connect storm
        walks all of them. No collection first (that would be a pause per start, and a
        test suite starts hundreds of hubs): start-up garbage waits for the first recycle.
        """
        gc.freeze()
        self.freezes += 1

    def attached(self, open_streams: int) -> None:
        self.since += 1
        if self.since >= max(self.floor, self.grow * open_streams):
            gc.collect(1)
            gc.freeze()
            self.freezes += 1
            self.since = 0
        if open_streams > self.peak and self.freezes > 1:
            self.peak = open_streams

    def detached(self, open_streams: int) -> None:
        if open_streams * 2 <= self.peak and self.peak - open_streams >= self.floor:
            started = time.perf_counter()
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            pause = time.perf_counter() - started
            self.longest_recycle = max(self.longest_recycle, pause)
            logger.debug("gc recycle at %d streams: %.1f ms", open_streams, pause * 1000)
            self.since = 0
            self.peak = open_streams

    def close(self) -> None:
        """The hub stopped: hand everything back to the collector."""
        if self.freezes:
            gc.unfreeze()
        self.peak = 0
        self.since = 0
