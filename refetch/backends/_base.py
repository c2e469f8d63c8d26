"""The backend contract: move bytes between instances and give them global positions.

A backend knows nothing of update types or connections. It appends opaque payloads to
one shared, ordered stream (a Redis stream, a PostgreSQL table, a JetStream stream) and
reads them back in order. The hub turns a position into a cursor ``<epoch>.<position>``;
the epoch names the stream, so a cursor from another deployment (or from a stream that
was wiped and recreated) is recognised as foreign and answered with ``resync``.
"""

from __future__ import annotations

import abc
import importlib
import re
from collections.abc import AsyncIterator, Sequence
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

from .._exceptions import ConfigurationError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# SQLAlchemy names the driver in the scheme: postgresql+asyncpg://, postgres+psycopg://.
_POSTGRES = re.compile(r"^postgres(ql)?(\+[a-z0-9_]+)?$")


class Entry(NamedTuple):
    """One payload at its position in the shared stream (positions strictly increase)."""

    position: int
    payload: bytes


class StreamGap(Exception):
    """Entries after the requested position were dropped (trimmed, or the stream reset)."""


class Backend(abc.ABC):
    """A shared, ordered stream of payloads. Positions are non-negative ints, 0 = empty."""

    #: The broker's address without credentials, for messages and logs.
    url: str = ""

    #: ``read()`` yields at least this often (seconds) while the broker answers: an
    #: empty batch after a round trip that found nothing new. The listener then counts
    #: a broker silent for ``liveness + 1`` s as lost (a stalled broker: alive, silent),
    #: so the instance fails closed on time. ``None``: no such promise; only an error
    #: from ``read()`` tells a lost broker. The built-in backends promise 0.5 s.
    liveness: float | None = None

    @abc.abstractmethod
    async def connect(self) -> str:
        """Reach the broker, create the stream if needed, return its epoch.

        Idempotent: the hub calls it again after losing the broker, and a changed
        epoch means the stream was recreated. Raises ``BackendUnavailable``.
        """

    @abc.abstractmethod
    async def head(self) -> int:
        """The position of the newest entry (0 when there is none)."""

    @abc.abstractmethod
    async def append(self, payloads: Sequence[bytes]) -> list[int]:
        """Append payloads in order; return their positions. Raises on failure."""

    @abc.abstractmethod
    def read(self, after: int) -> AsyncIterator[list[Entry]]:
        """Every entry after ``after``, in order, as batches, forever (an empty batch
        now and then when idle, see ``liveness``).

        Raises ``StreamGap`` if entries after ``after`` were dropped, and any other
        exception when the broker is lost (the hub reconnects and reads again).
        """

    @abc.abstractmethod
    async def replay(self, after: int, upto: int) -> list[Entry] | None:
        """The entries in ``(after, upto]``, or ``None`` when some were dropped.

        ``upto`` is a position that ``read()`` has returned: only those are final
        (a PostgreSQL row becomes readable once older transactions end).
        """

    @abc.abstractmethod
    async def ping(self) -> None:
        """One round trip to the broker; raises when it cannot be reached."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections this backend opened (never a client it was given)."""


def check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise ConfigurationError(
            f"{kind} {name!r} must be letters, digits and underscores (at most 63), "
            "not starting with a digit"
        )
    return name


def require_driver(module: str, extra: str, what: str) -> None:
    """Import a backend's driver now: a missing extra is an error at construction, not at start."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"{what} needs the {module!r} package, which is not installed: "
            f"pip install 'refetch[{extra}]'"
        ) from exc


def is_postgres(url: str) -> bool:
    return bool(_POSTGRES.match(urlsplit(url).scheme.lower()))


def postgres_dsn(url: str) -> str:
    """A libpq URL for asyncpg, also from SQLAlchemy's ``postgresql+asyncpg://...?ssl=require``.

    Users copy their app's DATABASE_URL; the driver in the scheme means nothing to asyncpg
    (refetch always talks asyncpg), and asyncpg's DSN spells SQLAlchemy's ``ssl=`` ``sslmode=``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if "+" not in scheme or not _POSTGRES.match(scheme):
        return url
    from urllib.parse import parse_qsl, urlencode

    query = [("sslmode" if k == "ssl" else k, v) for k, v in parse_qsl(parts.query, True)]
    return urlunsplit(parts._replace(scheme="postgresql", query=urlencode(query)))


def redact(url: str) -> str:
    """``url`` without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def backend_from_url(url: str) -> Backend:
    """The backend a URL names (``memory://``: a new in-process ``MemoryBackend``)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from .memory import MemoryBackend

        return MemoryBackend()
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisBackend

        return RedisBackend(url)
    if _POSTGRES.match(scheme):
        from .postgres import PostgresBackend

        return PostgresBackend(url)
    if scheme in ("nats", "tls"):
        from .nats import NatsBackend  # type: ignore[import-untyped,unused-ignore]

        backend: Backend = NatsBackend(url)
        return backend
    raise ConfigurationError(
        f"unknown backend URL {redact(url)!r}: use memory://, redis://host:6379/0, "
        "postgresql://user@host/db (postgresql+asyncpg:// too) or nats://host:4222"
    )


def split_options(url: str, names: Sequence[str]) -> tuple[str, dict[str, str]]:
    """Take refetch's own query parameters (``?stream=...``) out of a broker URL."""
    from urllib.parse import parse_qsl, urlencode

    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in names:
            ours[name] = value
        else:
            rest.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), ours
