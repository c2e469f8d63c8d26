"""Local demand: for each registered ``Interest``, how many open streams here would hear it.

The registry reports every stream that comes, goes or changes principal; only interests
of the stream's types are looked at, so a connect costs the interests of its types (none
when no on-demand poller is declared). A count that goes 0 -> 1 or 1 -> 0 is reported to
``on_flip`` (the hub's presence), at once, on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from .._demand import Interest
from .connection import Connection


class LocalDemand:
    __slots__ = ("_by_type", "_counts", "_interests", "_keyed", "_refs", "on_flip", "streams")

    def __init__(self) -> None:
        self._interests: dict[str, Interest] = {}
        self._refs: dict[str, int] = {}
        self._by_type: dict[str, list[Interest]] = {}
        self._counts: dict[str, int] = {}
        #: type -> how many registered interests of it have a key (the stream's hello lists them).
        self._keyed: dict[str, int] = {}
        #: Called with (interest id, wanted here) when a count leaves or reaches 0.
        self.on_flip: Callable[[str, bool], None] = lambda _id, _wanted: None
        #: The open streams, for an interest registered while some are open.
        self.streams: Callable[[], Iterable[Connection]] = tuple

    def register(self, interest: Interest) -> None:
        """Count ``interest`` from now on (registering it twice counts it once)."""
        self._refs[interest.id] = self._refs.get(interest.id, 0) + 1
        if interest.id in self._interests:
            return
        self._interests[interest.id] = interest
        self._by_type.setdefault(interest.type, []).append(interest)
        if interest.key is not None:
            self._keyed[interest.type] = self._keyed.get(interest.type, 0) + 1
        count = sum(1 for c in self.streams() if interest.heard_by(c.types, c.scopes, c.watch))
        self._counts[interest.id] = count
        if count:
            self.on_flip(interest.id, True)

    def unregister(self, interest: Interest) -> None:
        refs = self._refs.get(interest.id, 0) - 1
        if refs > 0:
            self._refs[interest.id] = refs
            return
        self._refs.pop(interest.id, None)
        if self._interests.pop(interest.id, None) is None:
            return
        same_type = self._by_type[interest.type]
        same_type.remove(interest)
        if not same_type:
            del self._by_type[interest.type]
        if interest.key is not None:
            left = self._keyed.pop(interest.type) - 1
            if left:
                self._keyed[interest.type] = left
        if self._counts.pop(interest.id, 0):
            self.on_flip(interest.id, False)

    @property
    def keyed_types(self) -> Collection[str]:
        """The types with at least one keyed interest registered: those a stream's ``watch=``
        narrows (the ``watch`` of its ``hello``)."""
        return self._keyed.keys()

    def count(self, interest_id: str) -> int:
        return self._counts.get(interest_id, 0)

    def wanted(self) -> frozenset[str]:
        """The interests some stream here would hear."""
        return frozenset(i for i, n in self._counts.items() if n)

    def added(self, conn: Connection) -> None:
        self._change(conn, 1)

    def removed(self, conn: Connection) -> None:
        self._change(conn, -1)

    def _change(self, conn: Connection, step: int) -> None:
        if not self._by_type:
            return
        types, scopes, watch = conn.types, conn.scopes, conn.watch
        for type_ in types:
            for interest in self._by_type.get(type_, ()):
                if interest.heard_by(types, scopes, watch):
                    before = self._counts[interest.id]
                    self._counts[interest.id] = before + step
                    if before == 0 or before + step == 0:
                        self.on_flip(interest.id, step > 0)
