"""Who is on the other end of a stream, and how an app tells refetch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from ._types import Scope


@dataclass(frozen=True, slots=True)
class Principal:
    """The identity of one stream.

    ``scopes`` are matched against the ``audience`` of updates (e.g. ``"tenant:acme"``,
    ``"user:42"``). ``types`` limits which update types the principal may subscribe to;
    ``None`` means all declared types. ``subject`` names the principal (a user id) so
    that ``UpdateService.reauthorize()`` can change the scopes of its open streams and
    ``close_streams(subject=...)`` end them all (sign out everywhere). ``session`` names
    the browser session (the login) the stream belongs to, so that
    ``close_streams(session=...)`` ends only that browser's streams (sign-out); a
    reauthorization keeps each stream's own session.
    """

    subject: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    types: frozenset[str] | None = None
    session: str | None = None

    @classmethod
    def of(
        cls,
        subject: str | None = None,
        scopes: Iterable[str] = (),
        types: Iterable[str] | None = None,
        *,
        session: str | None = None,
    ) -> Principal:
        return cls(subject, frozenset(scopes), None if types is None else frozenset(types), session)


ANONYMOUS = Principal()

#: An app's authentication hook: given the ASGI scope of the request, return the
#: principal, or ``None`` for "not authenticated" (the endpoint answers 401).
Authenticate = Callable[[Scope], "Awaitable[Principal | None] | Principal | None"]
