"""Password hashing with scrypt from the standard library, on threads of its own.

scrypt costs tens of milliseconds of CPU per try. In the event loop's default thread pool
(`asyncio.to_thread`, min(32, CPUs + 4) threads) a login flood ran as many hashes at once
and starved the event loop of CPU: 16 clients flooding login took `GET /api/flavors` from 4 ms
to 68 ms. `PasswordChecker` hashes on a few threads of its own (half the CPUs by default),
so the rest stay with the API, and lets only a bounded number of logins wait for them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

_N, _R, _P = 2**14, 8, 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


# A hash to check unknown emails against, so "no such user" takes as long as "wrong password".
_DUMMY = hash_password(secrets.token_urlsafe(8))


class Busy(Exception):
    """Too many logins are waiting for a hashing thread: answer 429 without hashing."""


class PasswordChecker:
    """Checks passwords on `workers` threads; at most `queue` more checks wait for one."""

    def __init__(self, workers: int | None = None, queue: int = 32) -> None:
        self.workers = workers or max(1, (os.cpu_count() or 2) // 2)
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="portal-scrypt")
        self._slots = self.workers + queue
        self._taken = 0

    async def check(self, password: str, stored: str | None) -> bool:
        """Whether `password` matches `stored` (an unknown user, None, costs the same)."""
        if self._taken >= self._slots:
            raise Busy(f"{self._taken} logins are being checked; try again in a moment")
        self._taken += 1
        try:
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(
                self._executor, verify_password, password, stored or _DUMMY
            )
        finally:
            self._taken -= 1
        return ok and stored is not None

    async def __aenter__(self) -> PasswordChecker:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
