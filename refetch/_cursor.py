"""Cursors: ``<epoch>.<position>``, the one place they are built and read.

The epoch names one numbering of updates (a local hub's run, or a backend's stream), so a
cursor from another run or deployment is recognised as foreign. A cursor comes from the
client (``Last-Event-ID``), so reading one never raises: garbage is simply not a cursor.

The rule is shared with the JS client (js/src/cursors.ts) through one file of examples,
tests/cursor_vectors.json, which both test suites read.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A position never needs more digits than this (a PostgreSQL position is
#: ``xid * 10**19 + id``, up to 39 digits); longer ones are garbage, and ``int()`` of a
#: few thousand digits is slow or refused outright.
MAX_DIGITS = 40
#: A whole cursor never needs more characters than this: our epochs are 8 hex digits, so
#: this leaves room for other epochs while keeping what a client can send small. The
#: endpoint refuses a longer ``Last-Event-ID`` before authentication (a 400).
MAX_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Cursor:
    epoch: str
    position: int

    def __str__(self) -> str:
        return f"{self.epoch}.{self.position}"

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        """The cursor ``text`` names, or None when it is not one (never raises)."""
        text = text.strip()
        if len(text) > MAX_LENGTH:
            return None
        epoch, dot, digits = text.rpartition(".")
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
