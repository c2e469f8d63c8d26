"""The fan-out's index of open streams: by type, by scope, by session, and the idle ones
per type.

A notify for everyone touches only the idle subscribers of its type; one for an
audience only the holders of its scopes; a sign-out only the streams of its session.
Keeping the indexes in one place keeps them consistent when a stream comes, goes, or
changes principal.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .._auth import Principal
from .connection import Connection
from .demand import LocalDemand


class Registry:
    __slots__ = ("_all", "_by_scope", "_by_session", "_by_type", "_demand", "_idle")

    def __init__(self, types: Iterable[str], demand: LocalDemand | None = None) -> None:
        self._demand = LocalDemand() if demand is None else demand
        self._demand.streams = lambda: self._all
        self._all: set[Connection] = set()
        self._by_type: dict[str, set[Connection]] = {t: set() for t in types}
        self._by_scope: dict[str, set[Connection]] = {}
        # Principal.session -> its streams. A stream keeps its session for life (a
        # reauthorization keeps it), so it is indexed once, in add(), and dropped in remove().
        self._by_session: dict[str, set[Connection]] = {}
        self._idle: dict[str, set[Connection]] = {t: set() for t in self._by_type}

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[Connection]:
        """A snapshot: callers may end streams while they walk it."""
        return iter(list(self._all))

    def add(self, conn: Connection) -> None:
        self._all.add(conn)
        for type_ in conn.types:
            self._by_type[type_].add(conn)
        self._index_scopes(conn)
        session = conn.principal.session
        if session is not None:
            self._by_session.setdefault(session, set()).add(conn)
        self._demand.added(conn)

    def remove(self, conn: Connection) -> None:
        """Forget ``conn`` everywhere (idempotent)."""
        if conn in self._all:
            self._all.discard(conn)
            self._demand.removed(conn)
            session = conn.principal.session
            if session is not None:
                holders = self._by_session.get(session)
                if holders is not None:
                    holders.discard(conn)
                    if not holders:
                        del self._by_session[session]
        self.unindex(conn)

    def of_session(self, session: str) -> list[Connection]:
        """The streams of one ``Principal.session`` (a snapshot: callers end them)."""
        return list(self._by_session.get(session, ()))

    def unindex(self, conn: Connection) -> None:
        """Take ``conn`` out of the indexes: no update reaches it any more."""
        for type_ in conn.types:
            self._by_type[type_].discard(conn)
            self._idle[type_].discard(conn)
        self._unindex_scopes(conn)

    def subscribers(self, type_: str) -> int:
        return len(self._by_type[type_])

    def idle(self, type_: str) -> set[Connection]:
        return self._idle[type_]

    def rest(self, conn: Connection) -> None:
        """``conn`` has nothing to write: an update for everyone wakes it."""
        for type_ in conn.types:
            self._idle[type_].add(conn)

    def wake(self, conn: Connection) -> None:
        for type_ in conn.types:
            self._idle[type_].discard(conn)

    def audience(self, type_: str, scopes: frozenset[str]) -> list[Connection]:
        """The subscribers of ``type_`` holding one of ``scopes``."""
        if len(scopes) == 1:
            (scope,) = scopes
            return [c for c in self._by_scope.get(scope, ()) if type_ in c.types]
        found: set[Connection] = set()
        for scope in scopes:
            found.update(self._by_scope.get(scope, ()))
        return [c for c in found if type_ in c.types]

    def rescope(self, conn: Connection, principal: Principal) -> None:
        """Give ``conn`` a new principal: new scopes, and fewer types if it allows fewer.

        ``principal.session`` must be the stream's own (the session index stays as is)."""
        self._demand.removed(conn)
        self._unindex_scopes(conn)
        conn.principal = principal
        self._index_scopes(conn)
        if principal.types is not None:
            for type_ in conn.types - principal.types:
                self._by_type[type_].discard(conn)
                self._idle[type_].discard(conn)
                conn.pending.pop(type_, None)
            conn.types = conn.types & principal.types
        self._demand.added(conn)

    def counts_by_type(self) -> dict[str, int]:
        return {t: len(c) for t, c in self._by_type.items()}

    def _index_scopes(self, conn: Connection) -> None:
        for scope in conn.scopes:
            self._by_scope.setdefault(scope, set()).add(conn)

    def _unindex_scopes(self, conn: Connection) -> None:
        for scope in conn.scopes:
            holders = self._by_scope.get(scope)
            if holders is not None:
                holders.discard(conn)
                if not holders:
                    del self._by_scope[scope]
