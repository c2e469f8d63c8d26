"""Broker URLs: which kind of broker a URL names, and the helpers every driver shares.

One scheme table (``kind_of``) for the backend factory, the leases and the apps that ask
"does this URL hold poller leases?". Nothing here imports a driver.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._exceptions import ConfigurationError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# SQLAlchemy names the driver in the scheme: postgresql+asyncpg://, postgres+psycopg://.
_POSTGRES = re.compile(r"^postgres(ql)?(\+[a-z0-9_]+)?$")

Kind = Literal["memory", "redis", "postgres", "nats"]

#: The URL schemes of each kind of broker (PostgreSQL also with a driver: ``+asyncpg``).
_SCHEMES: dict[str, Kind] = {
    "memory": "memory",
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "nats": "nats",
    "tls": "nats",
}


def kind_of(url: str) -> Kind | None:
    """The kind of broker ``url`` names, or None for a scheme refetch does not know."""
    scheme = urlsplit(url).scheme.lower()
    if _POSTGRES.match(scheme):
        return "postgres"
    return _SCHEMES.get(scheme)


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
    return kind_of(url) == "postgres"


def postgres_dsn(url: str) -> str:
    """A libpq URL for asyncpg, also from SQLAlchemy's ``postgresql+asyncpg://...?ssl=require``.

    Users copy their app's DATABASE_URL; the driver in the scheme means nothing to asyncpg
    (refetch always talks asyncpg), and asyncpg's DSN spells SQLAlchemy's ``ssl=`` ``sslmode=``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if "+" not in scheme or not _POSTGRES.match(scheme):
        return url
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


def split_options(url: str, names: Sequence[str]) -> tuple[str, dict[str, str]]:
    """Take refetch's own query parameters (``?stream=...``) out of a broker URL."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in names:
            ours[name] = value
        else:
            rest.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), ours
