"""Login throttling: per account and per client address, in the database.

Each failed login counts against two keys, `account:<email>` and `address:<client ip>`. Within
`login_window` seconds of the previous failure the count grows; past the free tries (5 per
account, 20 per address by default) every further failure locks the key for a delay that
doubles each time (1 s, 2 s, 4 s ... at most 15 min). While a key is locked, logins for it are
answered `429` with `Retry-After` *before* the password is looked at, so guessing right during
a lock gains nothing. A successful login clears the account's count (not the address's: one
valid account must not wash an address clean).

The counters live in the database because several portal instances share one: guesses spread
over instances meet the same counter. Checks in flight at once are not serialized, so a burst
gets at most as many extra guesses as there are hashing threads and queue slots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi.responses import JSONResponse
from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .config import Settings
from .models import LoginThrottle, utcnow


@dataclass(frozen=True)
class Locked:
    retry_after: int  # whole seconds, at least 1


class LoginThrottled(Exception):
    """Answered `429` with `Retry-After` and a `TooManyRequests` body (see `answer`)."""

    def __init__(self, locked: Locked, detail: str) -> None:
        super().__init__(detail)
        self.locked = locked
        self.detail = detail

    def answer(self) -> JSONResponse:
        seconds = self.locked.retry_after
        return JSONResponse(
            {"detail": f"{self.detail} (in {seconds} s)", "retry_after": seconds},
            status_code=429,
            headers={"Retry-After": str(seconds)},
        )


class LoginThrottler:
    #: every this many failures (here), old counters are deleted
    PRUNE_EVERY = 100

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._failures = 0

    def _keys(self, email: str, address: str | None) -> dict[str, int]:
        """The throttle keys of a login attempt, with the free tries of each."""
        found = {f"account:{email.lower()[:200]}": self.settings.login_account_tries}
        if address:
            found[f"address:{address[:200]}"] = self.settings.login_address_tries
        return found

    async def locked(self, db: AsyncSession, email: str, address: str | None) -> Locked | None:
        """Whether any key of this attempt is locked right now, and for how long."""
        now = utcnow()
        until = await db.scalar(
            select(LoginThrottle.locked_until)
            .where(
                LoginThrottle.key.in_(list(self._keys(email, address))),
                LoginThrottle.locked_until > now,
            )
            .order_by(LoginThrottle.locked_until.desc())
            .limit(1)
        )
        if until is None:
            return None
        return Locked(max(1, math.ceil((until - now).total_seconds())))

    async def failed(self, db: AsyncSession, email: str, address: str | None) -> Locked | None:
        """Count a failure against every key; lock those past their free tries. Commits."""
        now = utcnow()
        window_start = now - timedelta(seconds=self.settings.login_window)
        longest: datetime | None = None
        for key, free in self._keys(email, address).items():
            failures = await self._count(db, key, now, window_start)
            if failures > free:
                delay = min(
                    self.settings.login_lock_base * 2 ** min(failures - free - 1, 30),
                    self.settings.login_lock_max,
                )
                until = now + timedelta(seconds=delay)
                await db.execute(
                    update(LoginThrottle).where(LoginThrottle.key == key).values(locked_until=until)
                )
                longest = until if longest is None else max(longest, until)
        await db.commit()
        self._failures += 1
        if self._failures % self.PRUNE_EVERY == 0:
            await self.forget_old(db)
        if longest is None:
            return None
        return Locked(max(1, math.ceil((longest - now).total_seconds())))

    async def forget_old(self, db: AsyncSession) -> None:
        """Drop counters past their window and lock (a spray of emails leaves one row each)."""
        now = utcnow()
        await db.execute(
            delete(LoginThrottle).where(
                LoginThrottle.last_failure_at < now - timedelta(seconds=self.settings.login_window),
                or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < now),
            )
        )
        await db.commit()

    async def succeeded(self, db: AsyncSession, email: str) -> None:
        """A right password outside any lock: the account starts afresh. Commits."""
        await db.execute(
            delete(LoginThrottle).where(LoginThrottle.key.in_(self._keys(email, None)))
        )
        await db.commit()

    async def _count(
        self, db: AsyncSession, key: str, now: datetime, window_start: datetime
    ) -> int:
        """Add one failure to `key` in a single statement (instances may count at once)."""
        dialect = db.get_bind().dialect.name
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(LoginThrottle)
        table = LoginThrottle.__table__
        statement = (
            insert.values(key=key, failures=1, last_failure_at=now, locked_until=None)
            .on_conflict_do_update(
                index_elements=[table.c.key],
                set_={
                    # a failure long after the previous one starts the count again
                    "failures": case(
                        (table.c.last_failure_at < window_start, 1),
                        else_=table.c.failures + 1,
                    ),
                    "last_failure_at": now,
                },
            )
            .returning(table.c.failures)
        )
        return int((await db.execute(statement)).scalar_one())
