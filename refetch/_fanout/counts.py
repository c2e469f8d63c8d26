"""``FanOutStatistics``: the fan-out's counters at one moment, frozen.

The fan-out counts with plain attributes (its hot path) and hands out this snapshot; the
hub's ``Statistics`` carries these fields on as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from .latency import BOUNDS


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

    @classmethod
    def empty(cls, types: tuple[str, ...]) -> FanOutStatistics:
        """Before the fan-out exists (the hub not started): nothing counted yet."""
        zeros = dict.fromkeys(types, 0)
        return cls(
            connections=0,
            updates=0,
            frames=0,
            deliveries=0,
            coalesced=0,
            pings=0,
            resyncs=0,
            replays=0,
            slow_disconnects=0,
            updates_by_type=dict(zeros),
            deliveries_by_type=dict(zeros),
            connections_by_type=dict(zeros),
            latency_counts=(0,) * (len(BOUNDS) + 1),
            latency_sum=0.0,
        )
