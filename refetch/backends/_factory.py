"""``backend_from_url``: the backend a URL names, its driver imported only then."""

from __future__ import annotations

from .._exceptions import ConfigurationError
from ._base import Backend
from ._urls import kind_of, redact


def backend_from_url(url: str) -> Backend:
    """The backend a URL names (``memory://``: a new in-process ``MemoryBackend``)."""
    kind = kind_of(url)
    if kind == "memory":
        from .memory import MemoryBackend

        return MemoryBackend()
    if kind == "redis":
        from .redis import RedisBackend

        return RedisBackend(url)
    if kind == "postgres":
        from .postgres import PostgresBackend

        return PostgresBackend(url)
    if kind == "nats":
        from .nats import NatsBackend  # type: ignore[import-untyped,unused-ignore]

        backend: Backend = NatsBackend(url)
        return backend
    raise ConfigurationError(
        f"unknown backend URL {redact(url)!r}: use memory://, redis://host:6379/0, "
        "postgresql://user@host/db (postgresql+asyncpg:// too) or nats://host:4222"
    )
