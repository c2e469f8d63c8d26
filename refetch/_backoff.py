"""Exponential backoff with full jitter, for every reconnect loop in refetch."""

from __future__ import annotations

import random


class Backoff:
    """Delays of ``uniform(0, min(cap, first * 2**attempt))`` seconds.

    Full jitter spreads the reconnects of many clients (or instances) after one outage
    instead of sending them back in waves.
    """

    def __init__(self, first: float = 0.05, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.attempt = 0

    def next(self) -> float:
        delay = full_jitter(self.first, self.cap, self.attempt)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


def full_jitter(first: float, cap: float, attempt: int) -> float:
    """A delay for the ``attempt``-th retry in a row (from 0): uniform below the doubled bound."""
    return random.uniform(0, min(cap, first * 2 ** min(attempt, 32)))
