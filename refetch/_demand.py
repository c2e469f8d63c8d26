"""Demand: who would hear a notify. One rule, shared by the fan-out (which counts its open
streams), the presence across instances (which names what is wanted by id) and the
on-demand pollers (which ask).

An ``Interest`` is what a ``notify(type, key, audience=...)`` would reach: a stream is
*demand* for it when it listens to the type, holds one of the audience's scopes (if there is
an audience), and, for a keyed interest, watches the whole type or that key (``watch=`` in
the stream's URL, docs/protocol.md). Delivery does not follow this rule: a stream that
watches keys still hears every update of its types; only demand is narrowed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: What a stream watches: type -> the keys it watches. A type absent from the mapping is
#: watched whole (every key is demand).
Watch = Mapping[str, frozenset[str]]

NO_WATCH: Watch = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Interest:
    """A notify's reach, as a question: "does anyone listen to this?"."""

    type: str
    key: str | None = None
    audience: frozenset[str] | None = None
    #: A short stable name of the interest, the same on every instance that declares it:
    #: presence messages carry it instead of types, keys and scopes.
    id: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        audience = "*" if self.audience is None else "\x1f".join(sorted(self.audience))
        text = f"{self.type}\x1e{'' if self.key is None else 'k' + self.key}\x1e{audience}"
        digest = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
        object.__setattr__(self, "id", digest)

    def heard_by(self, types: frozenset[str], scopes: frozenset[str], watch: Watch) -> bool:
        """Whether a stream of these types, scopes and watched keys is demand for it."""
        if self.type not in types:
            return False
        if self.audience is not None and self.audience.isdisjoint(scopes):
            return False
        if self.key is None:
            return True
        keys = watch.get(self.type)
        return keys is None or self.key in keys
