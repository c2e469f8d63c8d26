"""``Cached``: what a poller last knew, as ``BackgroundWorker.latest()`` hands it out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Cached:
    """What a poller last knew. `fetched_at` is None until the first successful poll.

    `fetched_at`: when the API last confirmed `value` (a 200 or a 304).
    `changed_at`: when `value` last changed. `stale`: the latest poll failed; `error` says why.
    """

    value: Any = None
    fetched_at: datetime | None = None
    changed_at: datetime | None = None
    stale: bool = False
    error: str | None = None

    @property
    def has_value(self) -> bool:
        return self.fetched_at is not None
