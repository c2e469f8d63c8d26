"""What a notification is: an update type, optionally a key, optionally an audience."""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from ._exceptions import UnknownUpdateType


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


def type_name(type_: str | enum.Enum) -> str:
    """An update type's name: an enum member's value, or the string itself."""
    return str(type_.value) if isinstance(type_, enum.Enum) else type_


def audience_of(audience: Iterable[str] | str | None) -> frozenset[str] | None:
    """The scopes of an audience; a plain string is one scope, not a set of letters."""
    if audience is None:
        return None
    if isinstance(audience, str):
        return frozenset((audience,))
    return frozenset(audience)


def make_update(
    type_: str | enum.Enum,
    key: str | int | None = None,
    audience: Iterable[str] | str | None = None,
    *,
    known: Collection[str] | None = None,
) -> Update:
    """One normalized update (every entry point builds it here); checks the type if ``known``."""
    name = type_name(type_)
    if known is not None and name not in known:
        listed = list(known) if isinstance(known, list | tuple) else sorted(known)
        raise UnknownUpdateType([str(name)], listed)
    return Update(name, None if key is None else str(key), audience_of(audience))
