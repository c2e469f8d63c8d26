"""``Statistics``: a snapshot of a hub, for debugging and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .._fanout.counts import FanOutStatistics
from .._fanout.latency import BOUNDS


@dataclass(frozen=True, slots=True)
class SequencerStatistics:
    """A sequencer's state at one moment (the fields of ``Statistics`` it answers for)."""

    cursor: str
    replay_log: int
    publisher_down: str | None = None
    listener_down: str | None = None
    backend: str | None = None
    backend_lag: float | None = None


@dataclass(frozen=True, slots=True)
class Statistics:
    """A snapshot of the hub, for debugging and metrics."""

    connections: int
    updates: int
    frames: int
    deliveries: int
    coalesced: int
    pings: int
    resyncs: int
    replays: int
    slow_disconnects: int
    replay_log: int
    cursor: str
    #: With a backend: why publishing / listening is failing right now (None: fine).
    publisher_down: str | None = None
    listener_down: str | None = None
    #: Per update type: updates delivered, frames that named the type, open streams.
    updates_by_type: dict[str, int] = field(default_factory=dict)
    deliveries_by_type: dict[str, int] = field(default_factory=dict)
    connections_by_type: dict[str, int] = field(default_factory=dict)
    #: How long updates waited, from notify() (with a backend: from its publish) until
    #: an invalidate frame carried them out: counts per bucket of ``latency_bounds``
    #: seconds, the last one unbounded, and the sum. One count per live frame written
    #: (not replays: what a resuming client missed is as old as its absence).
    latency_bounds: tuple[float, ...] = BOUNDS
    latency_counts: tuple[int, ...] = ()
    latency_sum: float = 0.0
    #: The backend's URL (without password); None: one process, no broker.
    backend: str | None = None
    #: With a backend: seconds from publishing an update to reading it back, last seen.
    backend_lag: float | None = None
    #: "new", "running", "draining" (shutting down: no new streams) or "closed".
    state: str = "running"

    @classmethod
    def of(cls, fanout: FanOutStatistics, sequencer: SequencerStatistics, state: str) -> Statistics:
        """The hub's snapshot: the fan-out's and the sequencer's, side by side."""
        parts = {f.name: getattr(fanout, f.name) for f in fields(fanout)}
        parts.update({f.name: getattr(sequencer, f.name) for f in fields(sequencer)})
        return cls(**parts, state=state)
