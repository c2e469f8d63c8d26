"""What a stream request asks for (its types and its cursor), read before authentication.

This runs for clients nobody has identified yet, so its work is linear in the request and
bounded whatever is sent: the query string is refused past a size no honest request reaches,
``types=`` is checked name by name against the declared set (duplicates folded in a set,
reading stops at the first few unknown names), and a cursor longer than any the server hands
out is refused. A refusal names at most a few offending values, each escaped and cut short,
so the answer and its log line stay small: a 62 KB URL of 16,000 distinct names used to cost
over a second of event-loop time and a 190 KB answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from .._cursor import MAX_LENGTH as MAX_CURSOR_LENGTH
from .._demand import NO_WATCH, Watch
from .._log import loggable
from .._types import Scope

#: Bytes of query string a stream request may carry (more when the declared types need it:
#: see ``RequestReader.max_query``). Honest ones carry ``types=`` and ``lastEventId=``.
MAX_QUERY = 8192
#: Offending values a refusal names, and the characters it shows of each.
MAX_NAMED = 3
MAX_NAME = 40
#: ``watch=<type>:<key>``: the longest key, and the most watched keys in one request (each
#: type takes at most the hub's ``max_keys``).
MAX_WATCH_KEY = 128
MAX_WATCHED = 256


@dataclass(frozen=True, slots=True)
class StreamRequest:
    #: The requested types; empty when the client asked for every type it may see.
    types: frozenset[str]
    last_event_id: str | None
    #: ``watch=<type>:<key>`` parameters: per type, the keys the stream is demand for
    #: (types not named: every key). It hears every update of its types all the same.
    watch: Watch = field(default_factory=lambda: NO_WATCH)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is a 400: the JSON body's ``error``, ``detail`` and extra fields."""

    error: str
    detail: str
    fields: tuple[tuple[str, object], ...] = ()

    def body(self) -> dict[str, object]:
        return {"error": self.error, "detail": self.detail, **dict(self.fields)}


class RequestReader:
    """Reads stream requests for one hub's declared types."""

    def __init__(self, declared: Sequence[str], max_keys: int = 64) -> None:
        self.declared = frozenset(declared)
        self.max_keys = max_keys
        self.known = list(declared)
        # Room for every declared type and a cursor, percent-encoded (3 bytes a UTF-8 byte).
        every = len(",".join(declared).encode())
        self.max_query = max(MAX_QUERY, 3 * (every + MAX_CURSOR_LENGTH) + 64)

    def read(self, scope: Scope) -> StreamRequest | Refusal:
        raw: bytes = scope.get("query_string", b"")
        if len(raw) > self.max_query:
            return Refusal(
                "query_too_long",
                f"the query string is {len(raw)} bytes; a stream request takes at most "
                f"{self.max_query} (types=<declared types> and lastEventId=<cursor>)",
            )
        query = parse_qs(raw.decode("latin-1"), keep_blank_values=True)
        types = self._types(query.get("types"))
        if isinstance(types, Refusal):
            return types
        cursor = _last_event_id(scope, query)
        if isinstance(cursor, Refusal):
            return cursor
        values = query.get("watch")
        if values is None:
            return StreamRequest(types, cursor)
        watch = self._watch(values, types)
        if isinstance(watch, Refusal):
            return watch
        return StreamRequest(types, cursor, watch)

    def _watch(self, values: list[str], types: frozenset[str]) -> Watch | Refusal:
        """``watch=<type>:<key>``, repeated; split at the first colon."""
        if len(values) > MAX_WATCHED:
            return Refusal(
                "too_many_watched_keys",
                f"{len(values)} watch= parameters; a stream watches at most {MAX_WATCHED} keys",
                (("max", MAX_WATCHED),),
            )
        watch: dict[str, set[str]] = {}
        for value in values:
            type_, colon, key = value.partition(":")
            problem = None
            if not colon:
                problem = "has no colon"
            elif not key:
                problem = "has an empty key"
            elif len(key) > MAX_WATCH_KEY:
                problem = f"has a key of {len(key)} characters (at most {MAX_WATCH_KEY})"
            if problem is not None:
                shown = loggable(value, MAX_NAME)
                return Refusal(
                    "malformed_watch",
                    f"watch={shown} {problem}: write watch=<type>:<key>, e.g. watch=compute:eu-1",
                    (("watch", shown),),
                )
            if type_ not in self.declared:
                shown = loggable(type_, MAX_NAME)
                return Refusal(
                    "unknown_type",
                    f"unknown update type in watch=: {shown}",
                    (("unknown", [shown]), ("known", self.known)),
                )
            if types and type_ not in types:
                shown = loggable(type_, MAX_NAME)
                return Refusal(
                    "malformed_watch",
                    f"watch= names {shown}, which types= does not ask for: add it to types=",
                    (("watch", loggable(value, MAX_NAME)),),
                )
            keys = watch.setdefault(type_, set())
            keys.add(key)
            if len(keys) > self.max_keys:
                shown = loggable(type_, MAX_NAME)
                return Refusal(
                    "too_many_watched_keys",
                    f"more than {self.max_keys} watched keys of {shown}; watch the whole type "
                    "instead (no watch= for it)",
                    (("max", self.max_keys),),
                )
        return {type_: frozenset(keys) for type_, keys in watch.items()}

    def _types(self, values: list[str] | None) -> frozenset[str] | Refusal:
        if values is None:
            return frozenset()
        declared = self.declared
        names: set[str] = set()
        unknown: list[str] = []  # at most MAX_NAMED: ``in`` on it is constant time
        for name in (part.strip() for value in values for part in value.split(",")):
            if not name:
                return Refusal(
                    "malformed_types",
                    "types= takes a comma-separated list of update types, e.g. types=a,b",
                    (("known", self.known),),
                )
            if name in declared:
                names.add(name)
            elif name not in unknown:
                unknown.append(name)
                if len(unknown) == MAX_NAMED:
                    break  # enough to say what is wrong; the rest goes unread
        if not unknown:
            return frozenset(names)
        shown = [loggable(name, MAX_NAME) for name in unknown]
        more = " and maybe more" if len(unknown) == MAX_NAMED else ""
        return Refusal(
            "unknown_type",
            f"unknown update type(s): {', '.join(shown)}{more}",
            (("unknown", shown), ("known", self.known)),
        )


def _last_event_id(scope: Scope, query: dict[str, list[str]]) -> str | Refusal | None:
    """The client's cursor: the ``Last-Event-ID`` header wins over ``lastEventId=``."""
    for name, value in scope.get("headers", ()):
        if name == b"last-event-id":
            text: str = value.decode("latin-1").strip()
            if text:
                return _bounded(text, "the Last-Event-ID header")
    values = query.get("lastEventId")
    if values and values[-1].strip():
        return _bounded(values[-1].strip(), "lastEventId=")
    return None


def _bounded(cursor: str, where: str) -> str | Refusal:
    if len(cursor) <= MAX_CURSOR_LENGTH:
        return cursor
    return Refusal(
        "cursor_too_long",
        f"{where} is {len(cursor)} characters; a cursor is at most {MAX_CURSOR_LENGTH}: "
        "send back the id of a frame the stream sent, or none for a fresh stream",
    )
