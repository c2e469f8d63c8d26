"""What a notification is: an update type, optionally a key, optionally an audience."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Update:
    """One ``notify()`` call, after the hub gave it a cursor.

    ``key=None`` means the whole type changed. ``audience=None`` means every
    connection allowed to see the type; otherwise only connections whose
    principal holds at least one of these scopes.
    """

    type: str
    key: str | None = None
    audience: frozenset[str] | None = None
    cursor: str = ""
