"""A fixed-bucket histogram of how long updates wait before a frame carries them out.

The hub keeps its own counts (no metrics library in its hot path) and hands a
snapshot to ``statistics()``; ``refetch.metrics`` exposes it to Prometheus.
"""

from __future__ import annotations

from bisect import bisect_left

#: Upper bounds in seconds. ``min_interval`` (0.1 s by default) spaces a client's
#: frames, so most observations land below 0.25 s; the rest say something is wrong.
BOUNDS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """Counts per bucket (the last one is ``+Inf``) and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)
        self.total = 0.0

    def observe(self, seconds: float, weight: int = 1) -> None:
        """``weight`` frames that each waited ``seconds``."""
        self.counts[bisect_left(BOUNDS, seconds)] += weight
        self.total += seconds * weight

    def snapshot(self) -> tuple[tuple[int, ...], float]:
        return tuple(self.counts), self.total
