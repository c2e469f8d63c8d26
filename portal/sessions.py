"""How long a login session lives, and ending the streams of sessions that ended.

A session ends `session_idle_timeout` seconds after its last use or `session_max_age` seconds
after the login, whichever comes first. A use is any authenticated request, the stream's
opening included; it is recorded (`last_seen_at`) at most every `session_renew_interval`
seconds, so a busy client costs one write a minute, not one per request.

REST requests check the session every time (`auth.load_auth`). An open stream was checked when
it opened, so every instance runs a `SessionReaper`: every `session_check_interval` seconds it
looks up the sessions of the streams it holds and ends those whose session expired or is gone.
Sign-out does not wait for it: it ends the session's streams at once, on every instance, with
`UpdateService.close_streams(session=...)` (a control message that travels through the backend;
a stream's `Principal.session` is its login's public id, its subject the user id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from types import TracebackType

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from refetch import UpdateService

from .config import Settings
from .models import LoginSession, utcnow

logger = logging.getLogger("portal")


def expires_at(login: LoginSession, settings: Settings) -> datetime:
    """When the session ends unless it is used before (idle), and at the latest (absolute)."""
    idle = login.last_seen_at + timedelta(seconds=settings.session_idle_timeout)
    absolute = login.created_at + timedelta(seconds=settings.session_max_age)
    return min(idle, absolute)


def is_live(login: LoginSession, settings: Settings, now: datetime | None = None) -> bool:
    return (now or utcnow()) < expires_at(login, settings)


def needs_renewal(login: LoginSession, settings: Settings, now: datetime) -> bool:
    return now - login.last_seen_at >= timedelta(seconds=settings.session_renew_interval)


async def delete_expired(db: AsyncSession, settings: Settings) -> None:
    """Forget sessions that can no longer be used (they are refused already; this frees rows)."""
    now = utcnow()
    await db.execute(
        delete(LoginSession).where(
            or_(
                LoginSession.created_at < now - timedelta(seconds=settings.session_max_age),
                LoginSession.last_seen_at < now - timedelta(seconds=settings.session_idle_timeout),
            )
        )
    )
    await db.commit()


class SessionReaper:
    """Ends this instance's open streams whose login session expired or was deleted."""

    #: expired rows are deleted every this many checks (any instance may do it)
    CLEANUP_EVERY = 20

    def __init__(
        self,
        updates: UpdateService,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        self.updates = updates
        self.sessionmaker = sessionmaker
        self.settings = settings
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SessionReaper:
        self._task = asyncio.create_task(self._run(), name="portal.sessions")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        checks = 0
        while True:
            await asyncio.sleep(self.settings.session_check_interval)
            try:
                await self.check()
                checks += 1
                if checks % self.CLEANUP_EVERY == 0:
                    async with self.sessionmaker() as db:
                        await delete_expired(db, self.settings)
            except Exception:  # the database is away: try again next time
                logger.exception("checking the sessions of open streams failed")

    async def check(self) -> int:
        """End the streams held here whose session is no longer live. Returns how many."""
        held = {(c.subject, c.session) for c in self.updates.connections() if c.session}
        if not held:
            return 0
        users = sorted({int(subject) for subject, _ in held if subject is not None})
        live: set[str] = set()
        async with self.sessionmaker() as db:
            now = utcnow()
            for start in range(0, len(users), 500):  # bounded IN lists
                logins = await db.scalars(
                    select(LoginSession).where(LoginSession.user_id.in_(users[start : start + 500]))
                )
                live.update(
                    login.public_id for login in logins if is_live(login, self.settings, now)
                )
        ended = 0
        for subject, session in held:
            if session not in live:
                ended += self.updates.close_streams(
                    "session ended", subject=subject, session=session
                )
        if ended:
            logger.info("ended %d stream(s) of expired or deleted sessions", ended)
        return ended
