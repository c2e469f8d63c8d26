"""Settings from the environment; operators and tests rely on these names staying stable."""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import make_url

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./portal.db"
SECRET_FILE = "portal.secret"
N = TypeVar("N", int, float)


@dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    #: `python -m portal`'s HTTP limits (portal/http_limits.py); None: the fd limit less a reserve
    max_connections: int | None = None
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    max_body_bytes: int = 64 * 1024
    body_timeout: float = 10.0
    database_url: str = DEFAULT_DATABASE_URL
    backend_url: str | None = None
    simulator_url: str = "http://127.0.0.1:3000"
    session_secret: str | None = None
    secure_cookies: bool = False
    #: PostgreSQL only: run in this schema (tests isolate themselves with it).
    database_schema: str | None = None
    #: seconds between polls of the simulator; the note asks for 2 s for progress
    progress_interval: float = 2.0
    images_interval: float = 5.0
    shoots_interval: float = 3.0
    poll_timeout: float = 5.0
    poll_max_backoff: float | None = None
    #: Poll the simulator only while someone listens (docs/portal.md, "Polling on demand"):
    #: progress and images while any signed-in page is open, a tenant's clusters while a
    #: member of that tenant has one open. False: every poller polls around the clock.
    poll_on_demand: bool = True
    #: Seconds a poller goes on after the last listener left (a reload, a moment offline).
    poll_idle_after: float = 30.0
    #: seconds the simulated compute provider takes for each step of an instance
    provider_step: float = 2.0
    min_interval: float = 0.1
    heartbeat: float = 15.0
    close_on_signals: bool = True
    #: Sessions end after this long without a request (API or stream open) ...
    session_idle_timeout: float = 30 * 60
    #: ... and this long after login, used or not (see docs/portal.md, "Security").
    session_max_age: float = 12 * 3600
    #: A used session's `last_seen_at` is written at most this often (a write per request
    #: would turn every GET into a database write).
    session_renew_interval: float = 60.0
    #: How often each instance checks the sessions of its open streams (expired ones end).
    session_check_interval: float = 15.0
    #: Login throttling: failed logins allowed per account / per client address within
    #: `login_window` seconds before each further failure locks that key for a growing delay
    #: (`login_lock_base` doubling per failure, at most `login_lock_max`).
    login_account_tries: int = 5
    login_address_tries: int = 20
    login_window: float = 15 * 60
    login_lock_base: float = 1.0
    login_lock_max: float = 15 * 60
    #: Threads that hash passwords (scrypt), and how many logins may wait for one; beyond
    #: that a login gets 429 at once. None: half the CPUs (at least one), so a login flood
    #: leaves the other half to the API.
    password_workers: int | None = None
    password_queue: int = 32
    #: Emails of operators: they (and nobody else) read /api/admin/metrics, whose
    #: figures are the whole hub's, across tenants.
    operators: frozenset[str] = frozenset()
    #: A fixed bearer token for a metrics scraper (sessions expire; a scraper's must not).
    metrics_token: str | None = None
    ui_dist: Path = field(default_factory=lambda: Path(__file__).parent / "ui" / "dist")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        port = env.get("PORT", "8000")
        if not port.isdigit():
            raise ValueError(f"PORT must be a number, got {port!r}")
        return cls(
            host=env.get("HOST", "127.0.0.1"),
            port=int(port),
            max_connections=_env_number(env, "MAX_CONNECTIONS", 0) or None,
            max_header_bytes=_env_number(env, "MAX_HEADER_BYTES", 32 * 1024),
            max_headers=_env_number(env, "MAX_HEADERS", 100),
            header_timeout=_env_number(env, "HEADER_TIMEOUT", 10.0),
            max_body_bytes=_env_number(env, "MAX_BODY_BYTES", 64 * 1024),
            body_timeout=_env_number(env, "BODY_TIMEOUT", 10.0),
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            backend_url=env.get("REFETCH_BACKEND_URL") or None,
            simulator_url=(env.get("SIMULATOR_URL") or "http://127.0.0.1:3000").rstrip("/"),
            session_secret=env.get("SESSION_SECRET") or None,
            secure_cookies=env.get("SECURE_COOKIES", "") in ("1", "true", "yes"),
            poll_on_demand=env.get("POLL_ON_DEMAND", "1") not in ("0", "false", "no"),
            poll_idle_after=_seconds(env, "POLL_IDLE_AFTER", 30.0),
            session_idle_timeout=_seconds(env, "SESSION_IDLE_TIMEOUT", 30 * 60),
            session_max_age=_seconds(env, "SESSION_MAX_AGE", 12 * 3600),
            metrics_token=env.get("PORTAL_METRICS_TOKEN") or None,
            operators=frozenset(
                e.strip().lower() for e in env.get("PORTAL_OPERATORS", "").split(",") if e.strip()
            ),
        )


def _env_number(env: Mapping[str, str], name: str, default: N) -> N:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return type(default)(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        value = _env_number(env, name, float(default))
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive number of seconds, got {env.get(name, '')!r}")
    return value


def async_database_url(url: str) -> str:
    """Accept the usual spellings and pick the async driver: asyncpg or aiosqlite."""
    parsed = make_url(url)
    driver = parsed.drivername
    if driver in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif driver == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif driver not in ("postgresql+asyncpg", "sqlite+aiosqlite"):
        raise ValueError(
            f"DATABASE_URL: unsupported driver {driver!r}; use postgresql://... or sqlite:///..."
        )
    return parsed.render_as_string(hide_password=False)


def session_secret(settings: Settings) -> str:
    """The secret that signs session cookies: from the env, else generated once and kept
    in a file next to the SQLite database (or in the working folder)."""
    if settings.session_secret:
        return settings.session_secret
    parsed = make_url(async_database_url(settings.database_url))
    folder = Path(".")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent
    path = folder / SECRET_FILE
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    folder.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    # O_EXCL: two processes starting at once must agree on one secret
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret
