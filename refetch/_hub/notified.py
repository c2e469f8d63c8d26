"""Which hubs the running request notified, so its response can name a cursor at or after them.

``CursorHeaderMiddleware`` opens a record per HTTP request (a context variable: the request's
task, and the tasks and threads it starts, share the one record); ``UpdateService.notify()`` and
``publish()`` enter their hub in it. The middleware then answers with ``Refetch-Notified``
(docs/protocol.md) only when the request notified.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

_RECORD: ContextVar[set[int] | None] = ContextVar("refetch_notified", default=None)


def open_record() -> tuple[set[int], Token[set[int] | None]]:
    """A fresh record for this request; pass the token to ``close_record`` when it is done."""
    record: set[int] = set()
    return record, _RECORD.set(record)


def close_record(token: Token[set[int] | None]) -> None:
    _RECORD.reset(token)


def enter(hub: object) -> None:
    """``hub`` was notified by the running request (nothing outside a request)."""
    record = _RECORD.get()
    if record is not None:
        record.add(id(hub))


def notified(record: set[int], hub: object) -> bool:
    return id(hub) in record
