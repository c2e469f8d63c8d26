"""Backends that let several refetch instances share one stream of updates.

``UpdateService(types, backend="redis://127.0.0.1:6379/0")`` picks one by URL;
``UpdateService(types, backend=RedisBackend(client=app_redis))`` wraps a client the
app already has. The drivers are optional dependencies (``refetch[redis]``,
``refetch[postgres]``, ``refetch[nats]``), imported only when a backend is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import Backend, Entry, StreamGap
from ._factory import backend_from_url
from .memory import MemoryBackend

if TYPE_CHECKING:
    from .nats import NatsBackend
    from .postgres import PostgresBackend
    from .redis import RedisBackend

__all__ = [
    "Backend",
    "Entry",
    "MemoryBackend",
    "NatsBackend",
    "PostgresBackend",
    "RedisBackend",
    "StreamGap",
    "backend_from_url",
]

_LAZY = {
    "NatsBackend": ".nats",
    "PostgresBackend": ".postgres",
    "RedisBackend": ".redis",
}


def __getattr__(name: str) -> Any:
    # Importing refetch.backends must not import redis, asyncpg or nats.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
