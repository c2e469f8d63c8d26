"""What a notification is: an update type, optionally a key, optionally an audience."""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

from ._exceptions import ConfigurationError, UnknownUpdateType


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


@runtime_checkable
class DeclaresTypes(Protocol):
    """Something that declared its update types: the ``UpdateService``, say."""

    @property
    def types(self) -> tuple[str, ...]: ...


#: What ``types=`` accepts everywhere: the names, the enum they came from, or (where an
#: app has one at hand, ``notify_in_transaction``) the object that declared them.
TypesSpec = Iterable[str | enum.Enum] | type[enum.Enum] | DeclaresTypes


def declared_types(types: TypesSpec, *, spelled: str = "types={}") -> tuple[str, ...]:
    """The declared type names, in order, for every ``types=``: ``UpdateService``,
    ``Publisher``, ``notify_in_transaction``.

    One ``str`` is refused: it is an iterable of its letters, so ``"projects"`` would
    declare eight types; the message shows the fix as the caller spells it (``spelled``,
    ``{}`` where the types go). Only the names' form is checked here; the hub adds its
    own rules (no commas, no duplicates) for what it serves.
    """
    if isinstance(types, str):
        raise ConfigurationError(
            "types must be a list of names (or your enum), not one string: write "
            + spelled.format(f'["{types}"]')
            + ", not "
            + spelled.format(f'"{types}"')
        )
    if isinstance(types, type) and issubclass(types, enum.Enum):
        return tuple(type_name(member) for member in cast("type[enum.Enum]", types))
    if isinstance(types, DeclaresTypes):
        return tuple(types.types)
    return tuple(type_name(t) for t in types)


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
