"""Cursors: ``<epoch>.<position>``, the one place they are built and read.

The epoch names one numbering of updates (a local hub's run, or a backend's stream), so a
cursor from another run or deployment is recognised as foreign. A cursor comes from the
client (``Last-Event-ID``), so reading one never raises: garbage is simply not a cursor.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A position never needs more digits than this (a PostgreSQL position is
#: ``xid * 10**19 + id``, up to 39 digits); longer ones are garbage, and ``int()`` of a
#: few thousand digits is slow or refused outright.
MAX_DIGITS = 40


@dataclass(frozen=True, slots=True)
class Cursor:
    epoch: str
    position: int

    def __str__(self) -> str:
        return f"{self.epoch}.{self.position}"

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        """The cursor ``text`` names, or None when it is not one (never raises)."""
        epoch, dot, digits = text.strip().rpartition(".")
        if (
            not dot
            or not epoch
            or not digits
            or len(digits) > MAX_DIGITS
            or not digits.isascii()
            or not digits.isdigit()
        ):
            return None
        return cls(epoch, int(digits))
