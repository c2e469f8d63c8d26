"""Structured log records: every field a JSON log handler needs is an attribute, not text.

``refetch.streams`` (INFO): a stream opened, closed or was rejected.
``refetch.updates`` (DEBUG): one record per update the hub delivers, with its reach.

Each record carries ``event`` ("stream.opened", "stream.closed", "stream.rejected",
"update") plus the fields listed in docs/operations.md, passed with ``extra=``, so
``record.subject`` or ``record.reached`` is there for a handler to serialise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ._auth import Principal
from ._types import Scope
from ._update import Update

stream_logger = logging.getLogger("refetch.streams")
update_logger = logging.getLogger("refetch.updates")


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return None if not client else f"{client[0]}:{client[1]}"


def stream_opened(
    scope: Scope, principal: Principal, types: frozenset[str], resumed_from: str | None
) -> None:
    if not stream_logger.isEnabledFor(logging.INFO):
        return
    stream_logger.info(
        "stream opened: subject=%s types=%s resumed_from=%s",
        principal.subject,
        ",".join(sorted(types)),
        resumed_from,
        extra={
            "event": "stream.opened",
            "status": 200,
            "subject": principal.subject,
            "types": sorted(types),
            "resumed_from": resumed_from,
            "client": _client(scope),
            "path": scope.get("path"),
        },
    )


def stream_closed(
    scope: Scope, principal: Principal, reason: str, frames: int, duration: float
) -> None:
    if not stream_logger.isEnabledFor(logging.INFO):
        return
    stream_logger.info(
        "stream closed: subject=%s reason=%s frames=%d after %.1fs",
        principal.subject,
        reason,
        frames,
        duration,
        extra={
            "event": "stream.closed",
            "subject": principal.subject,
            "reason": reason,
            "frames": frames,
            "duration": duration,
            "client": _client(scope),
            "path": scope.get("path"),
        },
    )


def stream_rejected(scope: Scope, status: int, body: Mapping[str, object]) -> None:
    if not stream_logger.isEnabledFor(logging.INFO):
        return
    reason, detail = body.get("error"), body.get("detail")
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
            "path": scope.get("path"),
        },
    )


def update_delivered(update: Update, reached: int) -> None:
    """Callers check ``update_logger.isEnabledFor(DEBUG)`` first: this runs per update."""
    audience = sorted(update.audience) if update.audience is not None else None
    update_logger.debug(
        "notify %s key=%s audience=%s cursor=%s reached=%d",
        update.type,
        update.key,
        "*" if audience is None else audience,
        update.cursor,
        reached,
        extra={
            "event": "update",
            "update_type": update.type,
            "key": update.key,
            "audience": audience,
            "cursor": update.cursor,
            "reached": reached,
        },
    )
