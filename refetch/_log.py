"""Structured log records: every field a JSON log handler needs is an attribute, not text.

``refetch.streams`` (INFO): a stream opened, closed or was rejected.
``refetch.updates`` (DEBUG): one record per update the hub delivers, with its reach.

Each record carries ``event`` ("stream.opened", "stream.closed", "stream.rejected",
"update") plus the fields listed in docs/operations.md, passed with ``extra=``, so
``record.subject`` or ``record.reached`` is there for a handler to serialise.

Anything a client or an app chose (a path, a cursor, a subject, a key, an error's detail)
goes through ``loggable()`` first, in the message and in the fields alike: a plain-text log
must not get a second line forged by a ``%0A`` in a cursor, a terminal must not get escape
sequences, and a 1 MB header must not become a 1 MB line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ._auth import Principal
from ._types import Scope
from ._update import Update

stream_logger = logging.getLogger("refetch.streams")
update_logger = logging.getLogger("refetch.updates")


#: The most characters of one value a log record carries; longer ones are cut.
MAX_LOGGED = 200


def loggable(value: object, limit: int = MAX_LOGGED) -> str:
    """``value`` as one line of printable text, at most about ``limit`` characters.

    Characters that are not printable (newlines, ANSI escapes, other controls, bidi
    overrides, line separators) and the backslash itself are written as Python writes
    them in a string literal (``\\n``, ``\\x1b``, ``\\u202e``, ``\\\\``), so the
    escaped text reads back unambiguously. A value cut short says how much was left out.
    """
    text = value if isinstance(value, str) else str(value)
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    if not text.isprintable() or "\\" in text:
        text = "".join(
            c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii")
            for c in text
        )
    return text if cut <= 0 else f"{text}...({cut} more characters)"


def _loggable_or_none(value: object) -> str | None:
    return None if value is None else loggable(value)


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return None if not client else loggable(f"{client[0]}:{client[1]}")


def _path(scope: Scope) -> str | None:
    return _loggable_or_none(scope.get("path"))


def stream_opened(
    scope: Scope, principal: Principal, types: frozenset[str], resumed_from: str | None
) -> None:
    if not stream_logger.isEnabledFor(logging.INFO):
        return
    subject, cursor = _loggable_or_none(principal.subject), _loggable_or_none(resumed_from)
    names = [loggable(name) for name in sorted(types)]
    stream_logger.info(
        "stream opened: subject=%s types=%s resumed_from=%s",
        subject,
        ",".join(names),
        cursor,
        extra={
            "event": "stream.opened",
            "status": 200,
            "subject": subject,
            "types": names,
            "resumed_from": cursor,
            "client": _client(scope),
            "path": _path(scope),
        },
    )


def stream_closed(
    scope: Scope, principal: Principal, reason: str, frames: int, duration: float
) -> None:
    if not stream_logger.isEnabledFor(logging.INFO):
        return
    subject, reason = _loggable_or_none(principal.subject), loggable(reason)
    stream_logger.info(
        "stream closed: subject=%s reason=%s frames=%d after %.1fs",
        subject,
        reason,
        frames,
        duration,
        extra={
            "event": "stream.closed",
            "subject": subject,
            "reason": reason,
            "frames": frames,
            "duration": duration,
            "client": _client(scope),
            "path": _path(scope),
        },
    )


def stream_rejected(scope: Scope, status: int, body: Mapping[str, object]) -> None:
    if not stream_logger.isEnabledFor(logging.INFO):
        return
    reason = _loggable_or_none(body.get("error"))
    # The endpoint bounds what it puts in a refusal; escaped all the same, once more here.
    detail = _loggable_or_none(body.get("detail"))
    stream_logger.info(
        "stream rejected: %d %s (%s)",
        status,
        reason,
        detail,
        extra={
            "event": "stream.rejected",
            "status": status,
            "reason": reason,
            "detail": detail,
            "client": _client(scope),
            "path": _path(scope),
        },
    )


def update_delivered(update: Update, reached: int) -> None:
    """Callers check ``update_logger.isEnabledFor(DEBUG)`` first: this runs per update."""
    key = _loggable_or_none(update.key)
    audience = None if update.audience is None else sorted(map(loggable, update.audience))
    update_logger.debug(
        "notify %s key=%s audience=%s cursor=%s reached=%d",
        update.type,
        key,
        "*" if audience is None else audience,
        update.cursor,
        reached,
        extra={
            "event": "update",
            "update_type": update.type,
            "key": key,
            "audience": audience,
            "cursor": update.cursor,
            "reached": reached,
        },
    )
