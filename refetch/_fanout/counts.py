"""``FanOutStatistics``: the fan-out's counters at one moment, frozen.

The fan-out counts with plain attributes (its hot path) and hands out this snapshot; the
hub's ``Statistics`` carries these fields on as they are.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FanOutStatistics:
    connections: int
    updates: int
    frames: int
    deliveries: int
    coalesced: int
    pings: int
    resyncs: int
    replays: int
    slow_disconnects: int
    updates_by_type: dict[str, int]
    deliveries_by_type: dict[str, int]
    connections_by_type: dict[str, int]
    latency_counts: tuple[int, ...]
    latency_sum: float
